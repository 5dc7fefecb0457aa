package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/verity"
)

func init() { register(newVerityCmd) }

func newVerityCmd() *cobra.Command {
	return newGroupCmd("verity", "Build, check and show dm-verity hash trees (veritysetup compatible)",
		`Build, check and show dm-verity hash trees, byte for byte as
veritysetup format (cryptsetup 2.6) writes them, with flags named as
veritysetup names them. Salt and UUID come from --salt/--uuid or are
derived from --seed, never from randomness.`,
		newVerityFormatCmd(), newVerityVerifyCmd(), newVerityDumpCmd())
}

// verityFlags are the tree parameters shared by format and verify.
type verityFlags struct {
	hash          string
	format        uint32
	dataBlockSize uint32
	hashBlockSize uint32
	dataBlocks    uint64
	hashOffset    uint64
	salt          string
	uuid          string
	noSuperblock  bool
	rootHashFile  string
	json          bool
}

func (f *verityFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.hash, "hash", "sha256", "hash algorithm: sha1, sha256 or sha512")
	fl.Uint32Var(&f.format, "format", 1, "hash format: 1 normal, 0 Chrome OS")
	fl.Uint32Var(&f.dataBlockSize, "data-block-size", 4096, "data block size in bytes (512..65536, a power of two)")
	fl.Uint32Var(&f.hashBlockSize, "hash-block-size", 4096, "hash block size in bytes (512..65536, a power of two)")
	fl.Uint64Var(&f.dataBlocks, "data-blocks", 0, "number of data blocks to hash (default: all of DATA)")
	fl.Uint64Var(&f.hashOffset, "hash-offset", 0, "byte offset of the hash area in HASH (a multiple of 512)")
	fl.StringVar(&f.salt, "salt", "", `salt in hex, or "-" for none`)
	fl.BoolVar(&f.noSuperblock, "no-superblock", false, "no superblock: the tree starts at --hash-offset")
	fl.BoolVar(&f.json, "json", false, "print the result as JSON")
	cmd.RegisterFlagCompletionFunc("hash", cobra.FixedCompletions([]string{"sha256", "sha1", "sha512"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"1\tnormal", "0\tChrome OS"}, cobra.ShellCompDirectiveNoFileComp))
}

// params turns the flags into verity parameters (salt and UUID apart).
func (f *verityFlags) params() (verity.Params, error) {
	p := verity.Params{
		HashAlgorithm: f.hash, HashType: f.format,
		DataBlockSize: f.dataBlockSize, HashBlockSize: f.hashBlockSize,
		DataBlocks: f.dataBlocks, NoSuperblock: f.noSuperblock, HashOffset: f.hashOffset,
	}
	return p, p.Validate()
}

func newVerityFormatCmd() *cobra.Command {
	var f verityFlags
	var seed string
	cmd := &cobra.Command{
		Use:   "format DATA HASH",
		Short: "Compute the hash tree of DATA and write it (with a superblock) to HASH",
		Long: `Compute the dm-verity hash tree of DATA and write the superblock and the tree
to HASH, as "veritysetup format DATA HASH" does, and print the root hash.

HASH is written under a temporary name and renamed when complete. When HASH
is DATA, the hash area is appended to the data (from --hash-offset, by
default the end of the data blocks); on failure DATA is cut back to its
size.

The salt and superblock UUID are --salt and --uuid, or derived from --seed
(salt = HMAC-SHA256(seed, "verity-salt"), UUID = HMAC-SHA256(seed,
"verity-uuid") with the version 4 bits); without any of them the empty
seed is used, so the output is always reproducible.`,
		Example: `  imagebuilder verity format rootfs.img rootfs.verity --seed=my-build-1
  imagebuilder verity format disk.img disk.img --hash-offset=1073741824 --json`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := f.params()
			if err != nil {
				return fmt.Errorf("verity format: %w", err)
			}
			if p.Salt, err = verity.ParseSalt(f.salt); err != nil {
				return fmt.Errorf("verity format: %w", err)
			}
			if !cmd.Flags().Changed("salt") {
				p.Salt = verity.SaltFromSeed([]byte(seed))
			}
			p.UUID = verity.UUIDFromSeed([]byte(seed))
			if cmd.Flags().Changed("uuid") {
				if p.UUID, err = verity.ParseUUID(f.uuid); err != nil {
					return fmt.Errorf("verity format: %w", err)
				}
			}
			res, err := verityFormat(args[0], args[1], p, cmd.Flags().Changed("hash-offset"))
			if err != nil {
				return verityErr("verity format "+args[0]+" "+args[1], err)
			}
			if f.rootHashFile != "" {
				if err := atomicfile.WriteFile(f.rootHashFile, []byte(res.RootHashHex()+"\n"), 0o644); err != nil {
					return err
				}
			}
			return printVerityResult(cmd.OutOrStdout(), args[0], args[1], res, f.json, true)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&f.uuid, "uuid", "", "superblock UUID (default: derived from --seed)")
	cmd.Flags().StringVar(&f.rootHashFile, "root-hash-file", "", "also write the root hash (hex) to this file")
	cmd.Flags().StringVar(&seed, "seed", "", "derive the salt and UUID from this seed")
	return cmd
}

// verityErr puts the command and its files before an error, dropping the
// "verity: " prefix pkg/verity gives its own errors (the command says it):
// "verity verify rootfs.img rootfs.verity: data block 7 is corrupt: ...".
func verityErr(op string, err error) error {
	if inner := errors.Unwrap(err); inner != nil && err.Error() == "verity: "+inner.Error() {
		err = inner
	}
	return fmt.Errorf("%s: %w", op, err)
}

// verityFormat formats dataPath into hashPath.
func verityFormat(dataPath, hashPath string, p verity.Params, offsetGiven bool) (*verity.Result, error) {
	data, err := os.Open(dataPath)
	if err != nil {
		return nil, err
	}
	defer data.Close()
	st, err := data.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", dataPath)
	}
	size := st.Size()
	if hs, err := os.Stat(hashPath); err == nil && os.SameFile(st, hs) {
		return verityFormatAppended(dataPath, size, p, offsetGiven)
	}
	out, err := atomicfile.Create(hashPath, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Abort()
	res, err := verity.Format(data, size, out, p)
	if err != nil {
		return nil, err
	}
	// veritysetup's hash device size, even if the tail is a hole.
	if err := out.Truncate(res.HashDeviceSize()); err != nil {
		return nil, err
	}
	return res, out.Commit()
}

// verityFormatAppended writes the hash area into the data file itself, after
// the data blocks; on failure the file is cut back to its old size.
func verityFormatAppended(path string, size int64, p verity.Params, offsetGiven bool) (res *verity.Result, err error) {
	bs := int64(p.DataBlockSize)
	blocks := int64(p.DataBlocks)
	if blocks == 0 {
		if !offsetGiven {
			if size%bs != 0 {
				return nil, fmt.Errorf("data size %d of %s is not a multiple of the data block size %d", size, path, bs)
			}
			p.HashOffset = uint64(size)
		}
		blocks = int64(p.HashOffset) / bs
		if blocks == 0 || int64(p.HashOffset)%bs != 0 {
			return nil, fmt.Errorf("with the hash area in %s at offset %d, give --data-blocks", path, p.HashOffset)
		}
		p.DataBlocks = uint64(blocks)
	} else if !offsetGiven {
		p.HashOffset = uint64(blocks * bs)
	}
	if int64(p.HashOffset) < blocks*bs {
		return nil, fmt.Errorf("data area (%d blocks of %d bytes) overlaps the hash area at offset %d", blocks, bs, p.HashOffset)
	}
	if blocks*bs > size {
		return nil, fmt.Errorf("%s is %d bytes, too small for %d blocks of %d bytes", path, size, blocks, bs)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Truncate(size)
		}
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	res, err = verity.Format(f, size, f, p)
	if err != nil {
		return nil, err
	}
	if res.HashDeviceSize() > size {
		if err := f.Truncate(res.HashDeviceSize()); err != nil {
			return nil, err
		}
	}
	return res, f.Sync()
}

// verityJSON is the --json form of a result.
type verityJSON struct {
	RootHash       string `json:"root_hash,omitempty"`
	HashAlgorithm  string `json:"hash_algorithm"`
	HashType       uint32 `json:"hash_type"`
	DataBlockSize  uint32 `json:"data_block_size"`
	HashBlockSize  uint32 `json:"hash_block_size"`
	DataBlocks     uint64 `json:"data_blocks"`
	Salt           string `json:"salt"`
	UUID           string `json:"uuid,omitempty"`
	Superblock     bool   `json:"superblock"`
	HashOffset     uint64 `json:"hash_offset"`
	HashStartBlock uint64 `json:"hash_start_block"`
	HashBlocks     uint64 `json:"hash_blocks"`
	Levels         int    `json:"levels"`
	HashDeviceSize int64  `json:"hash_device_size"`
	Table          string `json:"table,omitempty"`
	SystemdCmdline string `json:"systemd_cmdline,omitempty"`
}

func printVerityResult(w io.Writer, dataPath, hashPath string, r *verity.Result, asJSON, withRoot bool) error {
	p := &r.Params
	uuid := ""
	if !p.NoSuperblock {
		uuid = verity.FormatUUID(p.UUID)
	}
	if asJSON {
		j := verityJSON{
			HashAlgorithm: p.HashAlgorithm, HashType: p.HashType,
			DataBlockSize: p.DataBlockSize, HashBlockSize: p.HashBlockSize, DataBlocks: r.DataBlocks,
			Salt: verity.SaltHex(r.Salt), UUID: uuid, Superblock: !p.NoSuperblock, HashOffset: p.HashOffset,
			HashStartBlock: r.HashStartBlock, HashBlocks: r.HashBlocks, Levels: r.Levels,
			HashDeviceSize: r.HashDeviceSize(),
		}
		if withRoot {
			j.RootHash = r.RootHashHex()
			j.Table = r.Table(dataPath, hashPath)
			j.SystemdCmdline = r.SystemdCmdline()
		}
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(j)
	}
	fmt.Fprintf(w, "VERITY header information for %s\n", hashPath)
	fmt.Fprintf(w, "UUID:            \t%s\n", uuid)
	fmt.Fprintf(w, "Hash type:       \t%d\n", p.HashType)
	fmt.Fprintf(w, "Data blocks:     \t%d\n", r.DataBlocks)
	fmt.Fprintf(w, "Data block size: \t%d\n", p.DataBlockSize)
	fmt.Fprintf(w, "Hash blocks:     \t%d\n", r.HashBlocks)
	fmt.Fprintf(w, "Hash block size: \t%d\n", p.HashBlockSize)
	fmt.Fprintf(w, "Hash algorithm:  \t%s\n", p.HashAlgorithm)
	fmt.Fprintf(w, "Salt:            \t%s\n", verity.SaltHex(r.Salt))
	if withRoot {
		fmt.Fprintf(w, "Root hash:      \t%s\n", r.RootHashHex())
	}
	_, err := fmt.Fprintf(w, "Hash device size: \t%d [bytes]\n", r.HashDeviceSize())
	return err
}

func newVerityVerifyCmd() *cobra.Command {
	var f verityFlags
	cmd := &cobra.Command{
		Use:   "verify DATA HASH [ROOTHASH]",
		Short: "Check DATA and its hash tree in HASH against a root hash",
		Long: `Recompute the hash tree of DATA and check it against the tree in HASH and the
root hash (given as an argument or with --root-hash-file), as "veritysetup
verify" does. The first corrupt block is named: a hash block (numbered from
the start of HASH, in hash blocks) or a data block.

With a superblock (the default) the parameters come from it; parameter
flags that are given must agree with it. With --no-superblock the flags
describe the tree; --data-blocks defaults to all of DATA.`,
		Example: `  imagebuilder verity verify rootfs.img rootfs.verity 4f2c...e1
  imagebuilder verity verify rootfs.img rootfs.verity --root-hash-file=roothash.txt`,
		Args: rangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			rootHex := ""
			switch {
			case len(args) == 3 && f.rootHashFile != "":
				return usagef("verity verify: give ROOTHASH or --root-hash-file, not both")
			case len(args) == 3:
				rootHex = args[2]
			case f.rootHashFile != "":
				b, err := os.ReadFile(f.rootHashFile)
				if err != nil {
					return err
				}
				rootHex = strings.TrimSpace(string(b))
			default:
				return usagef("verity verify: give ROOTHASH or --root-hash-file")
			}
			root, err := verity.ParseRootHash(rootHex)
			if err != nil {
				return fmt.Errorf("verity verify: %w", err)
			}
			res, err := verityVerify(cmd, &f, args[0], args[1], root)
			if err != nil {
				return verityErr("verity verify "+args[0]+" "+args[1], err)
			}
			if f.json {
				return printVerityResult(cmd.OutOrStdout(), args[0], args[1], res, true, true)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d data blocks and %d hash blocks match root hash %s\n",
				args[0], res.DataBlocks, res.HashBlocks, res.RootHashHex())
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().Lookup("salt").Usage = `salt in hex, or "-" for none (with --no-superblock)`
	cmd.Flags().StringVar(&f.uuid, "uuid", "", "expected superblock UUID")
	cmd.Flags().StringVar(&f.rootHashFile, "root-hash-file", "", "read the root hash (hex) from this file")
	return cmd
}

func verityVerify(cmd *cobra.Command, f *verityFlags, dataPath, hashPath string, root []byte) (*verity.Result, error) {
	data, err := os.Open(dataPath)
	if err != nil {
		return nil, err
	}
	defer data.Close()
	hash, err := os.Open(hashPath)
	if err != nil {
		return nil, err
	}
	defer hash.Close()
	st, err := data.Stat()
	if err != nil {
		return nil, err
	}
	changed := cmd.Flags().Changed
	var p verity.Params
	if !f.noSuperblock {
		sb, err := verity.ReadSuperblock(hash, int64(f.hashOffset))
		if err != nil {
			return nil, err
		}
		p = sb.Params(f.hashOffset)
		// Flags given must agree with the superblock (Verify checks).
		if changed("hash") {
			p.HashAlgorithm = f.hash
		}
		if changed("format") {
			p.HashType = f.format
		}
		if changed("data-block-size") {
			p.DataBlockSize = f.dataBlockSize
		}
		if changed("hash-block-size") {
			p.HashBlockSize = f.hashBlockSize
		}
		p.DataBlocks = f.dataBlocks
		p.Salt = nil
		p.UUID = [16]byte{}
	} else {
		if p, err = f.params(); err != nil {
			return nil, err
		}
		if p.DataBlocks == 0 {
			bs := int64(p.DataBlockSize)
			if st.Size()%bs != 0 {
				return nil, fmt.Errorf("data size %d of %s is not a multiple of the data block size %d (give --data-blocks)", st.Size(), dataPath, bs)
			}
			p.DataBlocks = uint64(st.Size() / bs)
		}
		if hs, err := hash.Stat(); err == nil && os.SameFile(st, hs) && p.DataBlocks*uint64(p.DataBlockSize) > p.HashOffset {
			return nil, fmt.Errorf("data area (%d blocks) overlaps the hash area at offset %d (give --data-blocks)", p.DataBlocks, p.HashOffset)
		}
	}
	if changed("salt") {
		if p.Salt, err = verity.ParseSalt(f.salt); err != nil {
			return nil, err
		}
	} else if f.noSuperblock {
		return nil, usagef("--no-superblock needs --salt (\"-\" for none)")
	}
	if changed("uuid") {
		if p.UUID, err = verity.ParseUUID(f.uuid); err != nil {
			return nil, err
		}
	}
	if err := verity.Verify(data, hash, root, p); err != nil {
		return nil, err
	}
	if !f.noSuperblock {
		sb, _ := verity.ReadSuperblock(hash, int64(f.hashOffset))
		p = sb.Params(f.hashOffset)
	}
	res, err := verity.Plan(p)
	if err != nil {
		return nil, err
	}
	res.RootHash = root
	return res, nil
}

func newVerityDumpCmd() *cobra.Command {
	var hashOffset uint64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "dump HASH",
		Short: "Show the verity superblock of HASH",
		Long: `Show the verity superblock at --hash-offset of HASH and the layout of the tree
it describes, as "veritysetup dump" does.`,
		Example: `  imagebuilder verity dump rootfs.verity`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := os.Open(args[0])
			if err != nil {
				return verityErr("verity dump", err)
			}
			defer h.Close()
			sb, err := verity.ReadSuperblock(h, int64(hashOffset))
			if err != nil {
				return verityErr("verity dump "+args[0], err)
			}
			res, err := verity.Plan(sb.Params(hashOffset))
			if err != nil {
				return verityErr("verity dump "+args[0], err)
			}
			return printVerityResult(cmd.OutOrStdout(), "", args[0], res, asJSON, false)
		},
	}
	cmd.Flags().Uint64Var(&hashOffset, "hash-offset", 0, "byte offset of the superblock in HASH")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the superblock as JSON")
	return cmd
}
