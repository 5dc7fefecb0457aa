package rootfs

import "github.com/imagebuilder/imagebuilder/pkg/gpt"

// The disk's partition table is pkg/gpt's; this file holds the layout
// choices of a root disk.

const (
	sectorSize   = gpt.DefaultSectorSize
	firstPartLBA = 2048 // 1 MiB
	attrReadOnly = gpt.AttrReadOnly
)

// Discoverable Partitions Specification types for x86-64.
var (
	TypeRootX86_64       = gpt.TypeRootX86_64
	TypeRootVerityX86_64 = gpt.TypeRootVerityX86_64
)

// GUID is a UUID in its canonical byte order (gpt.GUID).
type GUID = gpt.GUID

// Partition is one GPT entry (gpt.Partition).
type Partition = gpt.Partition

// diskSizeFor returns the image size for partitions ending at byte end: the
// backup GPT (33 sectors) after it, rounded up to 4 KiB.
func diskSizeFor(end int64) int64 {
	const backup = gpt.Entries*gpt.EntrySize/sectorSize + 1
	return (end + backup*sectorSize + 4095) &^ 4095
}
