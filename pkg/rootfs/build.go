package rootfs

import (
	"archive/tar"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/imagebuilder/imagebuilder/pkg/gpt"
	"github.com/imagebuilder/imagebuilder/pkg/ibroot"
	"github.com/imagebuilder/imagebuilder/pkg/verity"
)

// Options describe one root file system build.
type Options struct {
	// Sources are layered in order, bottom first (see SourceKinds).
	Sources []string
	// Platform selects the image of a multi-platform index and must match
	// each image's config; default "linux/amd64".
	Platform string
	// Agent is the kata-agent binary, installed as /usr/bin/kata-agent.
	Agent string
	// AddDirs are host directories copied over the tree (owned by root).
	AddDirs []string
	// Files are single files, "SRC:DST[:MODE]" (octal mode, default 0644,
	// or 0755 when SRC is executable).
	Files []string
	// Seed derives every UUID and the verity salt (its UTF-8 bytes are the
	// HMAC key). Required.
	Seed string
	// SourceDateEpoch is the time of every inode and the erofs build time.
	SourceDateEpoch int64
	// CacheDir keeps registry blobs by digest; "" disables the cache.
	CacheDir string
	// Keychain resolves registry credentials; nil means authn.DefaultKeychain.
	Keychain authn.Keychain
}

// DefaultCacheDir is where registry blobs are kept unless --cache says
// otherwise: $IMAGEBUILDER_CACHE/blobs, else the user cache directory's
// imagebuilder/blobs ($XDG_CACHE_HOME or ~/.cache).
func DefaultCacheDir() string {
	if c := os.Getenv("IMAGEBUILDER_CACHE"); c != "" {
		return filepath.Join(c, "blobs")
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "imagebuilder", "blobs")
}

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
// zero. On error the disk's content is undefined; the caller discards it.
func Build(opts Options, disk Disk) (*Description, error) {
	if opts.Seed == "" {
		return nil, errors.New("rootfs: a seed is required")
	}
	if opts.SourceDateEpoch < 0 {
		return nil, errors.New("rootfs: SOURCE_DATE_EPOCH is negative")
	}
	if len(opts.Sources) == 0 {
		return nil, errors.New("rootfs: at least one source is required")
	}
	plat, err := parsePlatform(opts.Platform)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	layers, err := resolveSources(opts.Sources, *plat, opts.CacheDir, opts.Keychain)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	ov, err := overlay(opts.Agent)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	layers = append(layers, ov)
	for _, d := range opts.AddDirs {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("rootfs: --add %s: not a directory", d)
		}
		layers = append(layers, layerSrc{name: "--add " + d, dir: d, noRoot: true})
	}
	if len(opts.Files) > 0 {
		fl, err := fileLayer(opts.Files)
		if err != nil {
			return nil, fmt.Errorf("rootfs: %w", err)
		}
		layers = append(layers, fl)
	}

	// Pass 1: the merged tree, metadata only.
	t, err := mergeLayers(layers)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}

	// Every byte not written below must read as zero.
	if err := disk.Truncate(0); err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	seed := []byte(opts.Seed)
	fsUUID := deriveUUID(seed, "file-system-uuid")
	im, err := layoutErofs(t, uint64(opts.SourceDateEpoch), fsUUID)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	p1off := int64(firstPartLBA * sectorSize)
	fsw := &offsetWriter{disk, p1off}
	// Pass 2: file contents, then metadata.
	if err := writeData(layers, im, fsw); err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	if err := im.finish(fsw); err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}

	// dm-verity over partition 1 into partition 2.
	fsSize := im.Size()
	p2off := p1off + fsSize
	vp := verity.DefaultParams()
	vp.Salt = verity.SaltFromSeed(seed)
	vp.UUID = verity.UUIDFromSeed(seed)
	vr, err := verity.Format(context.TODO(), io.NewSectionReader(disk, p1off, fsSize), fsSize, &offsetWriter{disk, p2off}, vp)
	if err != nil {
		return nil, fmt.Errorf("rootfs: verity: %w", err)
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
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	diskGUID := deriveUUID(seed, "disk-uuid")
	if err := gpt.Write(disk, diskSize, diskGUID, parts); err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
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
	}
	if d.Cmdline, err = cmdlines(vr, dataUUID, hashUUID); err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	return d, nil
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
func overlay(agent string) (layerSrc, error) {
	if agent == "" {
		return layerSrc{}, errors.New("--agent is required")
	}
	fi, err := os.Stat(agent)
	if err != nil {
		return layerSrc{}, fmt.Errorf("--agent: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return layerSrc{}, fmt.Errorf("--agent %s: not a regular file", agent)
	}
	dir := func(name string, perm uint32) entry {
		return entry{name: name, raw: name, typ: tar.TypeDir, perm: perm}
	}
	file := func(name string, perm uint32, content string) entry {
		return entry{name: name, raw: name, typ: tar.TypeReg, perm: perm,
			size: int64(len(content)), src: dataSrc{entry: -1, mem: []byte(content)}}
	}
	es := []entry{
		dir("dev", 0o755), dir("proc", 0o555), dir("sys", 0o555), dir("run", 0o755),
		dir("tmp", 0o1777), dir("var", 0o755), dir("mnt", 0o755),
		{name: "usr/bin/kata-agent", raw: "--agent " + agent, typ: tar.TypeReg, perm: 0o755,
			size: fi.Size(), src: dataSrc{entry: -1, host: agent}},
		file("usr/lib/systemd/system/kata-agent.service", 0o644, kataAgentService),
		file("usr/lib/systemd/system/kata-containers.target", 0o644, kataContainersTarget),
		{name: "etc/systemd/system/default.target", raw: "default.target", typ: tar.TypeSymlink,
			perm: 0o777, linkname: "/usr/lib/systemd/system/kata-containers.target"},
		file("etc/machine-id", 0o444, ""),
		file("etc/fstab", 0o644, fstab),
	}
	// The empty machine-id must exist even though it has no data.
	return layerSrc{name: "imagebuilder additions", mem: es}, nil
}

// fileLayer turns --file SRC:DST[:MODE] flags into one layer.
func fileLayer(specs []string) (layerSrc, error) {
	var es []entry
	for _, s := range specs {
		parts := strings.Split(s, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return layerSrc{}, fmt.Errorf("--file %q: want SRC:DST[:MODE]", s)
		}
		fi, err := os.Stat(parts[0])
		if err != nil {
			return layerSrc{}, fmt.Errorf("--file %q: %w", s, err)
		}
		if !fi.Mode().IsRegular() {
			return layerSrc{}, fmt.Errorf("--file %q: %s is not a regular file", s, parts[0])
		}
		perm := uint32(0o644)
		if fi.Mode().Perm()&0o111 != 0 {
			perm = 0o755
		}
		if len(parts) == 3 {
			m, err := strconv.ParseUint(parts[2], 8, 32)
			if err != nil || m > 0o7777 {
				return layerSrc{}, fmt.Errorf("--file %q: bad octal mode %q", s, parts[2])
			}
			perm = uint32(m)
		}
		name, err := cleanName(parts[1])
		if err == nil && (name == "" || strings.HasSuffix(parts[1], "/")) {
			err = errors.New("it names a directory, not a file")
		}
		if err != nil {
			return layerSrc{}, fmt.Errorf("--file %q: bad destination: %v", s, err)
		}
		es = append(es, entry{name: name, raw: s, typ: tar.TypeReg, perm: perm, size: fi.Size(),
			src: dataSrc{entry: -1, host: parts[0]}})
	}
	return layerSrc{name: "--file", mem: es, noDirReplace: true}, nil
}

// hexOrDash formats a salt as the kernel table does.
func hexOrDash(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	return hex.EncodeToString(b)
}
