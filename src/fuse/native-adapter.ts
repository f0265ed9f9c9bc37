// The fuse-native backend moved aside to ./fuse-native/adapter.ts. Kept only for
// test/crash/lower-change.test.ts, which imports this path; new code imports the new one.
export * from './fuse-native/adapter.ts';
