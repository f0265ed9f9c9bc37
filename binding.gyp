{
  "targets": [
    {
      "target_name": "layerfs_fuse",
      "sources": [
        "native/layerfs_fuse.cc", "native/fuse/ops.cc", "native/fuse/session.cc", "native/fuse/deliver.cc",
        "native/fuse/mount.cc", "native/fuse/replies.cc", "native/fuse/passthrough.cc", "native/fuse/notify.cc",
        "native/fuse/records.cc", "native/fuse/wire.cc"
      ],
      "defines": ["NAPI_VERSION=8", "FUSE_USE_VERSION=314", "_FILE_OFFSET_BITS=64"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "cflags_cc": ["-std=c++17", "-O2", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"]
    },
    {
      "target_name": "layerfs_sys",
      "sources": ["native/layerfs_sys.cc"],
      "defines": ["NAPI_VERSION=8", "_FILE_OFFSET_BITS=64", "_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-std=c++17", "-O2"]
    },
    {
      "target_name": "layerfs_seccomp",
      "sources": ["native/layerfs_seccomp.cc"],
      "defines": ["NAPI_VERSION=8", "_FILE_OFFSET_BITS=64", "_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-std=c++17", "-O2"],
      "libraries": ["-lseccomp"]
    },
    {
      "target_name": "layerfs_client",
      "type": "executable",
      "sources": ["native/client/client.c"],
      "cflags": ["-Wall", "-Wextra"],
      "cflags_c": ["-std=c11", "-O2"]
    },
    {
      "target_name": "layerfs_exec",
      "type": "executable",
      "sources": ["native/exec/exec.c"],
      "cflags": ["-Wall", "-Wextra"],
      "cflags_c": ["-std=c11", "-O2"]
    }
  ]
}
