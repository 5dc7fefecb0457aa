package rootfs

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/imagebuilder/imagebuilder/internal/meter"
	"github.com/imagebuilder/imagebuilder/pkg/gpt"
	"github.com/imagebuilder/imagebuilder/pkg/ibroot"
	"github.com/imagebuilder/imagebuilder/pkg/source"
	"github.com/imagebuilder/imagebuilder/pkg/verity"
)

// Options describe one root file system build.
type Options struct {
	// Sources are layered in order, bottom first (source.Parse reads
	// their string forms, source.FromImage wraps a v1.Image).
	Sources []source.Source
	// Platform selects the image of a multi-platform index and must match
	// each image's config; default "linux/amd64".
	Platform string
	// Agent is the kata-agent binary, installed as /usr/bin/kata-agent.
	// Required.
	Agent string
	// AddDirs are host directories copied over the tree (owned by root).
	AddDirs []string
	// Files are single host files; Mode nil means 0644, or 0755 when Src
	// is executable. Dst must name a file, not a directory of the tree.
	Files []source.File
	// Seed derives every UUID and the verity salt (its UTF-8 bytes are the
	// HMAC key). Required.
	Seed string
	// SourceDateEpoch is the time of every inode and the erofs build time.
	SourceDateEpoch int64
	// CacheDir keeps registry blobs by digest; "" disables the cache.
	CacheDir string
	// Keychain resolves registry credentials; nil means authn.DefaultKeychain.
	Keychain authn.Keychain
	// Progress, when set, is told how Build advances, step by step (see
	// internal/meter for the contract): source.Options.Progress's "pull"
	// and "flatten", then "erofs" (file contents written into the file
	// system, of the sum of the files' sizes), then "verity" (bytes of the
	// file system hashed, of its size).
	Progress func(step string, done, total int64)
}

// OptionError is an Options field Build cannot use. Field is the field's
// name ("Agent", "AddDirs", "Files", ...), Index the position in a list
// field (-1 for others), Value the value concerned.
type OptionError struct {
	Field string
	Index int
	Value string
	Err   error
}

func (e *OptionError) Error() string {
	f := "Options." + e.Field
	if e.Index >= 0 {
		f += fmt.Sprintf("[%d]", e.Index)
	}
	if e.Value != "" {
		f += " " + e.Value
	}
	return f + ": " + e.Err.Error()
}

func (e *OptionError) Unwrap() error { return e.Err }

// DefaultCacheDir is source.DefaultCacheDir.
func DefaultCacheDir() string { return source.DefaultCacheDir() }

// Partition names as systemd-repart writes them.
const (
	NameRoot       = "root-x86-64"
	NameRootVerity = "root-x86-64-verity"
)

// Description is the JSON description of a built disk.
type Description struct {
	Seed            string      `json:"seed"`
	SourceDateEpoch int64       `json:"source_date_epoch"`
	DiskSize        int64       `json:"disk_size"`
	DiskGUID        GUID        `json:"disk_guid"`
	Filesystem      Filesystem  `json:"filesystem"`
	Verity          VerityInfo  `json:"verity"`
	Partitions      []Partition `json:"partitions"`
	Cmdline         Cmdline     `json:"cmdline"`
	// Sources records what each source resolved to (manifest, config
	// and layer digests; a tar file's sha256), in order.
	Sources []source.Resolved `json:"sources"`
	// Agent is the file at /usr/bin/kata-agent.
	Agent AddedFile `json:"agent"`
	// AddedFiles are the regular files of the image that came from
	// Options.AddDirs and Options.Files, by path.
	AddedFiles []AddedFile `json:"added_files"`
}

// AddedFile is a host file as it went into the image; its sha256 is
// computed while the content is copied.
type AddedFile struct {
	Path   string `json:"path"`   // in the image, "/etc/kata/agent.toml"
	Source string `json:"source"` // the host file, as given
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Mode   uint32 `json:"mode"` // st_mode: type and permission bits
}

// Filesystem describes the erofs in partition 1.
type Filesystem struct {
	Type      string `json:"type"`
	UUID      GUID   `json:"uuid"`
	BlockSize int    `json:"block_size"`
	Blocks    uint32 `json:"blocks"`
	Size      int64  `json:"size"`
	Inodes    int    `json:"inodes"`
}

// VerityInfo is the dm-verity geometry of partition 2 over partition 1.
type VerityInfo struct {
	RootHash       string `json:"root_hash"`
	Salt           string `json:"salt"`
	UUID           GUID   `json:"uuid"`
	HashAlgorithm  string `json:"hash_algorithm"`
	HashType       uint32 `json:"hash_type"`
	DataBlockSize  uint32 `json:"data_block_size"`
	HashBlockSize  uint32 `json:"hash_block_size"`
	DataBlocks     uint64 `json:"data_blocks"`
	HashOffset     uint64 `json:"hash_offset"`      // bytes from the start of the hash partition to the superblock
	HashStartBlock uint64 `json:"hash_start_block"` // first tree block, in hash blocks from the start of the hash partition
	HashSize       int64  `json:"hash_size"`        // bytes of superblock and tree
}

// Cmdline holds the kernel command line fragments for each way a guest can
// open the verity root.
type Cmdline struct {
	// Systemd is for systemd-veritysetup-generator, which finds both
	// partitions by their PARTUUIDs (the root hash halves).
	Systemd string `json:"systemd"`
	// DMModCreate is for kernels with CONFIG_DM_INIT (no initrd needed).
	DMModCreate string `json:"dm_mod_create"`
	// IBRoot is read by the project's own guest init, which finds the data
	// and hash partitions by PARTUUID = root hash halves.
	IBRoot string `json:"ibroot"`
}

// Disk is where Build writes the image: an *os.File or atomicfile.File.
type Disk interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
}

// deriveUUID is systemd-repart's derivation: the first 16 bytes of
// HMAC-SHA256(key, msg) with the RFC 4122 version 4 bits set.
func deriveUUID(key []byte, msg string) GUID {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	var g GUID
	copy(g[:], m.Sum(nil))
	g[6] = g[6]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g
}

// Build layers the sources, adds the agent and units, and writes the GPT
// disk image (erofs, verity hash) into disk, which it first truncates to
// zero. It returns the description of the disk, or an error and no
// description; on error the disk's content is undefined and the caller
// discards it. Cancelling ctx stops the build within a second.
func Build(ctx context.Context, opts Options, disk Disk) (*Description, error) {
	d, err := build(ctx, opts, disk)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	return d, nil
}

func build(ctx context.Context, opts Options, disk Disk) (*Description, error) {
	if err := checkOptions(&opts); err != nil {
		return nil, err
	}
	uppers := []source.Upper{overlay(opts.Agent)}
	for _, d := range opts.AddDirs {
		uppers = append(uppers, source.Upper{Name: "added tree " + d, Tree: d})
	}
	if len(opts.Files) > 0 {
		uppers = append(uppers, source.Upper{Name: "added files", Files: opts.Files})
	}
	// Pass 1: the merged tree, metadata only.
	flat, err := source.Flatten(ctx, opts.Sources, source.Options{Platform: opts.Platform,
		CacheDir: opts.CacheDir, Keychain: opts.Keychain, Upper: uppers, Progress: opts.Progress})
	if err != nil {
		return nil, err
	}
	t, byInode := treeFromFlat(flat)

	// Every byte not written below must read as zero.
	if err := disk.Truncate(0); err != nil {
		return nil, err
	}
	seed := []byte(opts.Seed)
	fsUUID := deriveUUID(seed, "file-system-uuid")
	im, err := layoutErofs(t, uint64(opts.SourceDateEpoch), fsUUID)
	if err != nil {
		return nil, err
	}
	p1off := int64(firstPartLBA * sectorSize)
	fsw := &offsetWriter{disk, p1off}
	// Pass 2: file contents, then metadata. The files the caller added
	// are hashed on the way.
	sums := map[int]string{} // by flat inode
	buf := make([]byte, 1<<20)
	step := meter.Start(opts.Progress, "erofs", contentSize(flat))
	err = flat.Contents(ctx, func(i int, r io.Reader) error {
		e := &flat.Entries[i]
		r = meter.Reader(r, step)
		var h hash.Hash
		if e.Upper >= 0 {
			h = sha256.New()
			r = io.TeeReader(r, h)
		}
		if err := im.writeFile(fsw, byInode[e.Inode-1], r, buf); err != nil {
			return err
		}
		// The source must end here too: a host file that grew is an error.
		if n, err := io.Copy(io.Discard, r); err != nil || n > 0 {
			if err == nil {
				err = fmt.Errorf("%d bytes more than listed", n)
			}
			return err
		}
		if h != nil {
			sums[e.Inode] = hex.EncodeToString(h.Sum(nil))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := im.finish(fsw); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	step.End()

	// dm-verity over partition 1 into partition 2.
	fsSize := im.Size()
	p2off := p1off + fsSize
	vp := verity.DefaultParams()
	vp.Salt = verity.SaltFromSeed(seed)
	vp.UUID = verity.UUIDFromSeed(seed)
	step = meter.Start(opts.Progress, "verity", fsSize)
	vr, err := verity.Format(ctx, meter.ReaderAt(io.NewSectionReader(disk, p1off, fsSize), step), fsSize, &offsetWriter{disk, p2off}, vp)
	step.End()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("verity: %w", err)
	}
	hashSize := (vr.HashDeviceSize() + 4095) &^ 4095
	dataUUID, hashUUID := vr.PartitionUUIDs()
	parts := []Partition{
		{Number: 1, Name: NameRoot, Type: TypeRootX86_64, UUID: dataUUID, Offset: p1off, Size: fsSize},
		{Number: 2, Name: NameRootVerity, Type: TypeRootVerityX86_64, UUID: hashUUID, Offset: p2off, Size: hashSize},
	}
	for i := range parts {
		p := &parts[i]
		p.FirstLBA = uint64(p.Offset / sectorSize)
		p.LastLBA = uint64((p.Offset+p.Size)/sectorSize) - 1
		p.Attrs = attrReadOnly
	}
	diskSize := diskSizeFor(p2off + hashSize)
	if err := disk.Truncate(diskSize); err != nil {
		return nil, err
	}
	diskGUID := deriveUUID(seed, "disk-uuid")
	if err := gpt.Write(disk, diskSize, diskGUID, parts); err != nil {
		return nil, err
	}
	d := &Description{
		Seed:            opts.Seed,
		SourceDateEpoch: opts.SourceDateEpoch,
		DiskSize:        diskSize,
		DiskGUID:        diskGUID,
		Filesystem: Filesystem{Type: "erofs", UUID: fsUUID, BlockSize: blockSize,
			Blocks: im.blocks, Size: fsSize, Inodes: len(im.inodes)},
		Verity:     verityInfo(vr, vp.UUID),
		Partitions: parts,
		Sources:    flat.Sources,
		AddedFiles: []AddedFile{},
	}
	if d.Cmdline, err = cmdlines(vr, dataUUID, hashUUID); err != nil {
		return nil, err
	}
	for _, e := range flat.Entries {
		if e.Mode&sIFMT != sIFREG || e.Upper < 0 {
			continue
		}
		sum, ok := sums[e.Inode]
		if !ok { // empty: never streamed
			sum = emptySHA256
		}
		af := AddedFile{Path: "/" + e.Path, Source: e.HostPath, Size: e.Size, SHA256: sum, Mode: e.Mode}
		switch {
		case e.Path == agentPath:
			d.Agent = af
		case e.Upper > 0:
			d.AddedFiles = append(d.AddedFiles, af)
		}
	}
	return d, nil
}

const agentPath = "usr/bin/kata-agent"

var emptySHA256 = func() string { s := sha256.Sum256(nil); return hex.EncodeToString(s[:]) }()

// checkOptions checks the options that do not need the sources.
func checkOptions(opts *Options) error {
	if opts.Seed == "" {
		return &OptionError{Field: "Seed", Index: -1, Err: errors.New("required")}
	}
	if opts.SourceDateEpoch < 0 {
		return &OptionError{Field: "SourceDateEpoch", Index: -1, Value: fmt.Sprint(opts.SourceDateEpoch), Err: errors.New("negative")}
	}
	if len(opts.Sources) == 0 {
		return &OptionError{Field: "Sources", Index: -1, Err: errors.New("at least one source is required")}
	}
	if _, err := source.ParsePlatform(opts.Platform); err != nil {
		return &OptionError{Field: "Platform", Index: -1, Err: err}
	}
	if opts.Agent == "" {
		return &OptionError{Field: "Agent", Index: -1, Err: errors.New("required")}
	}
	if err := regularFile(opts.Agent); err != nil {
		return &OptionError{Field: "Agent", Index: -1, Value: opts.Agent, Err: err}
	}
	for i, d := range opts.AddDirs {
		if fi, err := os.Stat(d); err != nil {
			return &OptionError{Field: "AddDirs", Index: i, Value: d, Err: err}
		} else if !fi.IsDir() {
			return &OptionError{Field: "AddDirs", Index: i, Value: d, Err: errors.New("not a directory")}
		}
	}
	for i, f := range opts.Files {
		if f.Src == "" || f.Dst == "" {
			return &OptionError{Field: "Files", Index: i, Value: f.String(), Err: errors.New("a source and a destination are required")}
		}
		if err := regularFile(f.Src); err != nil {
			return &OptionError{Field: "Files", Index: i, Value: f.String(), Err: err}
		}
		if f.Mode != nil && *f.Mode > 0o7777 {
			return &OptionError{Field: "Files", Index: i, Value: f.String(), Err: fmt.Errorf("mode %#o out of range", *f.Mode)}
		}
	}
	return nil
}

// regularFile checks a host file the caller named (symlinks followed).
func regularFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	return nil
}

func verityInfo(vr *verity.Result, uuid [16]byte) VerityInfo {
	return VerityInfo{
		RootHash:       vr.RootHashHex(),
		Salt:           verity.SaltHex(vr.Salt),
		UUID:           GUID(uuid),
		HashAlgorithm:  vr.Params.HashAlgorithm,
		HashType:       vr.Params.HashType,
		DataBlockSize:  vr.Params.DataBlockSize,
		HashBlockSize:  vr.Params.HashBlockSize,
		DataBlocks:     vr.DataBlocks,
		HashOffset:     vr.Params.HashOffset,
		HashStartBlock: vr.HashStartBlock,
		HashSize:       vr.HashDeviceSize(),
	}
}

// ibrootParams are the guest init's kernel parameters for a verity result.
func ibrootParams(vr *verity.Result) ibroot.Params {
	return ibroot.Params{RootHash: vr.RootHash, Salt: vr.Salt, Alg: vr.Params.HashAlgorithm,
		DataBlocks: vr.DataBlocks, DataBlockSize: vr.Params.DataBlockSize, HashBlockSize: vr.Params.HashBlockSize,
		HashStart: vr.HashStartBlock, FSType: "erofs"}
}

func cmdlines(vr *verity.Result, dataUUID, hashUUID GUID) (Cmdline, error) {
	ib, err := ibroot.Format(ibrootParams(vr))
	if err != nil {
		return Cmdline{}, err
	}
	return Cmdline{
		Systemd: vr.SystemdCmdline(),
		DMModCreate: vr.DMModCreate("root", "PARTUUID="+dataUUID.String(), "PARTUUID="+hashUUID.String()) +
			" root=/dev/dm-0 rootfstype=erofs ro",
		IBRoot: ib,
	}, nil
}

// contentSize is the sum of the sizes of the files whose content Contents
// streams: each regular inode once.
func contentSize(flat *source.Flat) int64 {
	var n int64
	seen := map[int]bool{}
	for _, e := range flat.Entries {
		if e.Mode&sIFMT == sIFREG && !seen[e.Inode] {
			seen[e.Inode] = true
			n += e.Size
		}
	}
	return n
}

type offsetWriter struct {
	w   io.WriterAt
	off int64
}

func (o *offsetWriter) WriteAt(p []byte, off int64) (int, error) { return o.w.WriteAt(p, o.off+off) }

// The units, as Kata Containers ships them (tools/osbuilder), with
// FailureAction=poweroff so that a dead agent does not leave a zombie VM.
const kataAgentService = `[Unit]
Description=Kata Containers Agent
Documentation=https://github.com/kata-containers/kata-containers
Wants=kata-containers.target

[Service]
StandardOutput=tty
Type=simple
ExecStart=/usr/bin/kata-agent
LimitNOFILE=1048576
ExecStop=/bin/sync ; /usr/bin/systemctl --force poweroff
FailureAction=poweroff
OOMScoreAdjust=-997
`

const kataContainersTarget = `[Unit]
Description=Kata Containers Agent Target
Requires=basic.target
Requires=tmp.mount
Requires=kata-agent.service
Conflicts=rescue.service rescue.target
After=basic.target rescue.service rescue.target
AllowIsolate=yes
`

// fstab declares the writable paths of the read-only root as tmpfs;
// systemd-fstab-generator mounts them (/run is systemd's own).
const fstab = `# imagebuilder: read-only erofs root (dm-verity); writable paths on tmpfs
tmpfs /tmp tmpfs mode=1777,nosuid,nodev 0 0
tmpfs /var tmpfs mode=0755,nosuid,nodev 0 0
`

// overlay is what every image gets on top of its sources.
func overlay(agent string) source.Upper {
	dir := func(name string, perm uint32) source.Entry {
		return source.Entry{Path: name, Mode: sIFDIR | perm}
	}
	file := func(name string, perm uint32, content string) source.Entry {
		return source.Entry{Path: name, Mode: sIFREG | perm, Data: []byte(content)}
	}
	return source.Upper{Name: "imagebuilder additions", Entries: []source.Entry{
		dir("dev", 0o755), dir("proc", 0o555), dir("sys", 0o555), dir("run", 0o755),
		dir("tmp", 0o1777), dir("var", 0o755), dir("mnt", 0o755),
		{Path: agentPath, Mode: sIFREG | 0o755, HostFile: agent},
		file("usr/lib/systemd/system/kata-agent.service", 0o644, kataAgentService),
		file("usr/lib/systemd/system/kata-containers.target", 0o644, kataContainersTarget),
		{Path: "etc/systemd/system/default.target", Mode: sIFLNK | 0o777, Linkname: "/usr/lib/systemd/system/kata-containers.target"},
		// The empty machine-id must exist even though it has no data.
		file("etc/machine-id", 0o444, ""),
		file("etc/fstab", 0o644, fstab),
	}}
}
