// Package lazyfs is a FUSE filesystem that models power loss, in the spirit
// of LazyFS (used by Jepsen): it lets a test run a real program on a
// directory, cut the power at any moment, and see exactly what a disk
// that honours fsync and nothing more would have kept.
//
// # Model
//
// Every operation passes through to a backing directory, so that reads see
// the latest writes, as they would from the page cache. Beside the live
// state, the filesystem keeps the durable state, keyed by inode identity
// (an inode survives renames and hard links):
//
//   - File data. Bytes written (write, fallocate, truncate) since the last
//     fsync or fdatasync of the file are volatile. A sync makes the file's
//     current content and size durable. Writes through a descriptor opened
//     with O_SYNC or O_DSYNC are synced as they return.
//   - Directory entries. Creating, linking, renaming and removing a name
//     (create, mkdir, symlink, link, rename, unlink, rmdir) is volatile until
//     the directory that holds the name is fsynced (FUSE FSYNCDIR); that
//     fsync makes the directory's current list of names durable. A rename
//     touches two directories, and each side becomes durable at its own
//     directory's fsync: with only the source directory synced, a cut
//     loses the file; with only the target directory synced, a cut leaves
//     it under both names.
//   - Nothing else is modelled: modes, owners and times are kept as they
//     are; a file that comes back keeps the attributes it had last.
//
// After a cut, a name exists if and only if it is reachable from the root
// through durable entries, and a file holds its durable content: a file
// whose entry is durable but whose data was never synced comes back empty;
// a file synced in a directory never synced does not come back at all.
// What is present when Mount is called is taken as durable.
//
// # Use
//
// Mount serves a backing directory at a mount point. To cut the power,
// kill the processes using the mount (they must have no file open), then
// call PowerCut, which unmounts and rewrites the backing directory to the
// durable state; Remount serves it again, with the same model. Stats counts
// fsyncs and what the cuts dropped, and LastCut lists what the last cut
// dropped, file by file.
//
// # Storage
//
// The durable content of each file is kept in a shadow directory, one file
// per inode, updated at each fsync by copying only the byte ranges written
// since the previous one (and by truncating, after a truncation): a log
// fsynced after each append costs one small copy per fsync. PowerCut puts
// the backing directory back to the durable state the same way, copying
// back only the volatile ranges and hard-linking files into a rebuilt
// tree, then swapping the trees.
//
// # Limits
//
// Only regular files, directories and symlinks are supported (no mknod,
// no O_TMPFILE, no extended attributes). File locks are left to the kernel,
// which keeps them locally, as it does for any FUSE filesystem that does
// not implement them. The backing and shadow directories must be on one
// filesystem, and nothing but the mount may change the backing directory
// while it is mounted. A directory moved between two directories of which
// only the target was synced would be durable under two names, which a
// tree cannot hold: a cut keeps it under the first in path order.
package lazyfs
