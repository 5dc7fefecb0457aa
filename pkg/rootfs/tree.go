package rootfs

import (
	"path"
	"sort"

	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// Unix file type bits as stored in erofs i_mode.
const (
	sIFMT   = source.ModeType
	sIFSOCK = source.ModeSocket
	sIFLNK  = source.ModeSymlink
	sIFREG  = source.ModeRegular
	sIFBLK  = source.ModeBlock
	sIFDIR  = source.ModeDir
	sIFCHR  = source.ModeChar
	sIFIFO  = source.ModeFIFO
)

// inode is one file of the tree the erofs writer lays out. Several names
// (hard links) may share one inode. Only metadata is kept in memory.
type inode struct {
	mode     uint32 // type bits | permission bits (07777)
	uid, gid uint32
	size     int64
	rdev     uint32 // Linux new_encode_dev form
	target   string // symlink target
	xattrs   map[string]string
	children map[string]*inode // directories only

	lay layout // filled in by the erofs writer
}

func (n *inode) isDir() bool { return n.mode&sIFMT == sIFDIR }

// tree is the root file system to write.
type tree struct {
	root *inode
}

// treeFromFlat builds the erofs writer's tree from a flattened source tree
// and returns it with its inodes by Flat inode number - 1.
func treeFromFlat(f *source.Flat) (*tree, []*inode) {
	root := &inode{mode: f.RootMode, uid: f.RootUID, gid: f.RootGID, xattrs: f.RootXattrs, children: map[string]*inode{}}
	dirs := map[string]*inode{"": root}
	var byInode []*inode
	for _, e := range f.Entries {
		for len(byInode) < e.Inode {
			byInode = append(byInode, nil)
		}
		n := byInode[e.Inode-1]
		if n == nil {
			n = &inode{mode: e.Mode, uid: e.UID, gid: e.GID, xattrs: e.Xattrs}
			switch e.Mode & sIFMT {
			case sIFREG:
				n.size = e.Size
			case sIFLNK:
				n.target, n.size = e.Linkname, int64(len(e.Linkname))
			case sIFCHR, sIFBLK:
				n.rdev = encodeDev(e.DevMajor, e.DevMinor)
			case sIFDIR:
				n.children = map[string]*inode{}
				dirs[e.Path] = n
			}
			byInode[e.Inode-1] = n
		}
		dir, base := path.Split(e.Path)
		if len(dir) > 0 {
			dir = dir[:len(dir)-1]
		}
		dirs[dir].children[base] = n
	}
	return &tree{root: root}, byInode
}

// encodeDev is the kernel's new_encode_dev, the form erofs stores.
func encodeDev(major, minor uint32) uint32 {
	return (minor & 0xff) | (major << 8) | ((minor &^ 0xff) << 12)
}

// sortedNames returns the names of a directory's children in byte order.
func sortedNames(n *inode) []string {
	names := make([]string, 0, len(n.children))
	for k := range n.children {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
