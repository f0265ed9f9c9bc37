// The FUSE adapter's inode table on its own (no mount): names, hard links, forgetting.
import test from 'ava';
import { InodeTable } from '../../src/fuse/inodes.ts';

/** d1/a and d2/b: one object with two names, as the adapter records a hard link. */
function linked() {
  const t = new InodeTable();
  const d1 = t.ensureChild(t.root, 'd1').node;
  const d2 = t.ensureChild(t.root, 'd2').node;
  d1.lookups = d2.lookups = 1;
  const a = t.ensureChild(d1, 'a').node;
  a.lookups = 2;
  t.alias(a, d2, 'b');
  return { t, d1, d2, a };
}

test('a hard link stays reachable when the directory of its first name is forgotten', (t) => {
  const { t: tab, d1, d2, a } = linked();
  t.is(tab.path(a), '/d1/a');
  tab.forget(d1.id, 1); // the kernel reclaimed d1's dentries; the inode lives on through d2/b
  t.is(tab.get(d1.id), undefined);
  t.is(tab.path(a), '/d2/b');
  t.is(tab.child(d2, 'b'), a);
  // d1 looked up again: a new node, and d1/a can be given the same node again.
  const d1b = tab.ensureChild(tab.root, 'd1').node;
  t.not(d1b, d1);
  tab.alias(a, d1b, 'a');
  t.is(tab.path(a), '/d2/b');
  tab.unlinkName(d2, 'b');
  t.is(tab.path(a), '/d1/a');
});

test('the same when the second name\'s directory goes, and after a rename of the first name', (t) => {
  const { t: tab, d1, d2, a } = linked();
  tab.forget(d2.id, 1);
  t.is(tab.path(a), '/d1/a');
  const d3 = tab.ensureChild(tab.root, 'd3').node;
  d3.lookups = 1;
  tab.alias(a, d3, 'c');
  tab.rename(d1, 'a', d3, 'a2');
  tab.forget(d1.id, 1);
  t.is(tab.path(a), '/d3/a2');
  tab.unlinkName(d3, 'a2');
  t.is(tab.path(a), '/d3/c');
  tab.unlinkName(d3, 'c');
  t.is(tab.path(a), null, 'no name left: reached only through open handles');
});

test('path() walks the live chain even when a primary ancestor was dropped', (t) => {
  const { t: tab, d1, a } = linked();
  // An inconsistent order the kernel can produce: d1 dropped while a still names it first.
  (d1 as { lookups: number }).lookups = 0;
  tab.dropIfUnused(d1);
  t.is(tab.path(a), '/d2/b');
});
