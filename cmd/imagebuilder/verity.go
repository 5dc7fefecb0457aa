package main

import (
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
	json          jsonFlag
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
	addJSONFlag(cmd, &f.json)
	completeValues(cmd, "hash", "sha256", "sha1", "sha512")
	completeValues(cmd, "format", "1\tnormal", "0\tChrome OS")
}

// verityFlagErr is the usage error (exit 2) for a bad flag value.
func verityFlagErr(cmd *cobra.Command, flag string, err error) error {
	return usagef("%s: --%s: %v", commandName(cmd), flag, err)
}

// checkFlags checks each tree parameter flag the user gave on its own
// (against veritysetup's defaults for the others), so a bad value is a
// usage error naming its flag, before any file is touched.
func (f *verityFlags) checkFlags(cmd *cobra.Command) error {
	checks := []struct {
		flag string
		set  func(p *verity.Params)
	}{
		{"hash", func(p *verity.Params) { p.HashAlgorithm = f.hash }},
		{"format", func(p *verity.Params) { p.HashType = f.format }},
		{"data-block-size", func(p *verity.Params) { p.DataBlockSize = f.dataBlockSize }},
		{"hash-block-size", func(p *verity.Params) { p.HashBlockSize = f.hashBlockSize }},
		{"hash-offset", func(p *verity.Params) { p.HashOffset = f.hashOffset }},
	}
	for _, c := range checks {
		if !flagChanged(cmd, c.flag) {
			continue
		}
		p := verity.DefaultParams()
		c.set(&p)
		if err := p.Validate(); err != nil {
			return verityFlagErr(cmd, c.flag, err)
		}
	}
	if f.noSuperblock {
		// The offset must be a multiple of the hash block size then.
		p := f.params()
		if err := p.Validate(); err != nil {
			return verityFlagErr(cmd, "hash-offset", err)
		}
	}
	return nil
}

// params are the tree parameters the flags give (salt and UUID apart).
func (f *verityFlags) params() verity.Params {
	return verity.Params{
		HashAlgorithm: f.hash, HashType: f.format,
		DataBlockSize: f.dataBlockSize, HashBlockSize: f.hashBlockSize,
		DataBlocks: f.dataBlocks, NoSuperblock: f.noSuperblock, HashOffset: f.hashOffset,
	}
}

// checkVerityArgs refuses "-" for DATA and HASH (neither is a stream: the
// data is read at random offsets, the hash device written at them) and a
// directory as DATA, HASH or an output file.
func checkVerityArgs(cmd *cobra.Command, args []string, outputs ...string) error {
	for i, a := range args[:min(len(args), 2)] {
		name := []string{"DATA", "HASH"}[i]
		if a == "-" {
			return usagef("%s: %s -: stdin and stdout are not supported (the file is read or written at random offsets); give a file name", commandName(cmd), name)
		}
		if st, err := os.Stat(a); err == nil && st.IsDir() {
			return usagef("%s: %s %s: is a directory; give a file", commandName(cmd), name, a)
		}
	}
	for _, o := range outputs {
		if o == "" || o == "-" {
			continue
		}
		if st, err := os.Stat(o); err == nil && st.IsDir() {
			return usagef("%s: %s: is a directory; give a file name", commandName(cmd), o)
		}
	}
	return nil
}

func newVerityFormatCmd() *cobra.Command {
	var f verityFlags
	var seed string
	cmd := &cobra.Command{
		Use:   "format DATA HASH",
		Short: "Compute the hash tree of DATA and write it (with a superblock) to HASH",
		Long: `Compute the dm-verity hash tree of DATA and write the superblock and the tree
to HASH, as "veritysetup format DATA HASH" does, and print what veritysetup
prints (the root hash among it).

HASH, the --root-hash-file and the --json=FILE outputs appear together and
complete, or not at all, even if the command is killed.

When HASH is DATA, the hash area is appended to the data (at --hash-offset,
by default the end of the data blocks): it is computed first, in memory or
an unnamed temporary file, and written into DATA in one final step; on a
failure, SIGINT or SIGTERM DATA is cut back to its size.

The salt and superblock UUID are --salt and --uuid, or derived from --seed
(salt = HMAC-SHA256(seed, "verity-salt"), UUID = HMAC-SHA256(seed,
"verity-uuid") with the version 4 bits); without any of them the empty
seed is used, so the output is always reproducible.`,
		Example: `  imagebuilder verity format rootfs.img rootfs.verity --seed=my-build-1
  imagebuilder verity format disk.img disk.img --hash-offset=1073741824 --json`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.rootHashFile == "-" {
				return usagef("%s: --root-hash-file -: the root hash is printed on stdout already (--json prints it as JSON); give a file name", commandName(cmd))
			}
			if err := checkVerityArgs(cmd, args, f.rootHashFile, f.json.path); err != nil {
				return err
			}
			p, err := f.formatParams(cmd, seed)
			if err != nil {
				return err
			}
			op := "verity format " + args[0] + " " + args[1]
			res, err := f.runFormat(cmd, args[0], args[1], p)
			if err != nil {
				return verityErr(op, err)
			}
			if f.json.toStdout() {
				return printJSON(cmd.OutOrStdout(), res)
			}
			return printVerityText(cmd.OutOrStdout(), args[1], res)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&f.uuid, "uuid", "", "superblock UUID (default: derived from --seed)")
	cmd.Flags().StringVar(&f.rootHashFile, "root-hash-file", "", "also write the root hash (hex) to this file")
	cmd.Flags().StringVar(&seed, "seed", "", "derive the salt and UUID from this seed")
	return cmd
}

// formatParams turns the flags of format into the parameters.
func (f *verityFlags) formatParams(cmd *cobra.Command, seed string) (verity.Params, error) {
	if err := f.checkFlags(cmd); err != nil {
		return verity.Params{}, err
	}
	p := f.params()
	var err error
	if flagChanged(cmd, "salt") {
		if p.Salt, err = verity.ParseSalt(f.salt); err != nil {
			return p, verityFlagErr(cmd, "salt", err)
		}
	} else {
		p.Salt = verity.SaltFromSeed([]byte(seed))
	}
	p.UUID = verity.UUIDFromSeed([]byte(seed))
	if flagChanged(cmd, "uuid") {
		if p.UUID, err = verity.ParseUUID(f.uuid); err != nil {
			return p, verityFlagErr(cmd, "uuid", err)
		}
	}
	if flagChanged(cmd, "seed") && flagChanged(cmd, "salt") && (flagChanged(cmd, "uuid") || f.noSuperblock) {
		return p, usagef("%s: --seed: has no effect with --salt and %s given", commandName(cmd),
			map[bool]string{true: "--no-superblock", false: "--uuid"}[f.noSuperblock])
	}
	return p, nil
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

// openData opens DATA, which must be a regular file.
func openData(path string) (*os.File, int64, error) {
	data, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := data.Stat()
	if err != nil {
		data.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		data.Close()
		return nil, 0, fmt.Errorf("%s is not a regular file", path)
	}
	return data, st.Size(), nil
}

// runFormat formats DATA into HASH (or appends the hash area to DATA when
// HASH is DATA) and publishes every output together.
func (f *verityFlags) runFormat(cmd *cobra.Command, dataPath, hashPath string, p verity.Params) (*verity.Result, error) {
	ctx := cmd.Context()
	data, size, err := openData(dataPath)
	if err != nil {
		return nil, err
	}
	defer data.Close()
	st, _ := data.Stat()
	appended := false
	if hs, err := os.Stat(hashPath); err == nil && os.SameFile(st, hs) {
		appended = true
	}

	// Every output is created (unnamed) before the work starts, so an
	// output that cannot be created costs nothing and leaves nothing.
	set := &atomicfile.Set{}
	defer set.Abort()
	var hashOut, rootOut *atomicfile.File
	if !appended {
		if hashOut, err = set.Create(hashPath, 0o644); err != nil {
			return nil, err
		}
	}
	if f.rootHashFile != "" {
		if rootOut, err = set.Create(f.rootHashFile, 0o644); err != nil {
			return nil, err
		}
	}
	writeJSON, err := f.json.stage(set)
	if err != nil {
		return nil, err
	}
	finish := func(res *verity.Result) error {
		res.DataDevice, res.HashDevice = dataPath, hashPath
		if rootOut != nil {
			if _, err := rootOut.WriteString(res.RootHashHex() + "\n"); err != nil {
				return fmt.Errorf("output %s: %w", f.rootHashFile, err)
			}
		}
		return writeJSON(res)
	}

	if !appended {
		res, err := verity.Format(ctx, data, size, hashOut, p)
		if err != nil {
			return nil, err
		}
		// veritysetup's hash device size, even if the tail is a hole.
		if err := hashOut.Truncate(res.HashDeviceSize()); err != nil {
			return nil, fmt.Errorf("output %s: %w", hashPath, err)
		}
		if err := finish(res); err != nil {
			return nil, err
		}
		return res, set.Commit()
	}

	rw, err := os.OpenFile(dataPath, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer rw.Close()
	a, err := verity.PrepareAppended(ctx, rw, p)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	res := a.Result()
	if err := finish(res); err != nil {
		return nil, err
	}
	// From here on DATA grows: an interrupted run cuts it back.
	unregister := atomicfile.RegisterCleanup(func() { a.Revert() })
	defer unregister()
	if err := a.Commit(ctx); err != nil {
		return nil, err
	}
	if err := set.Commit(); err != nil {
		a.Revert()
		return nil, err
	}
	return res, nil
}

// printVerityText prints a result as veritysetup format (with the root
// hash) and veritysetup dump (without) print it.
func printVerityText(w io.Writer, hashPath string, r *verity.Result) error {
	p := &r.Params
	uuid := ""
	if !p.NoSuperblock {
		uuid = verity.FormatUUID(p.UUID)
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
	if len(r.RootHash) > 0 {
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
verify" does, with the same checks: every digest, the zero spare area
after the digests of each hash block, and device sizes that fit what the
superblock declares. The first corrupt block is named: a hash block
(numbered from the start of HASH, in hash blocks) or a data block.

With a superblock (the default) the parameters come from it; parameter
flags that are given must agree with it. With --no-superblock the flags
describe the tree; --data-blocks defaults to all of DATA.`,
		Example: `  imagebuilder verity verify rootfs.img rootfs.verity 4f2c...e1
  imagebuilder verity verify rootfs.img rootfs.verity --root-hash-file=roothash.txt`,
		Args: rangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkVerityArgs(cmd, args, f.json.path); err != nil {
				return err
			}
			op := "verity verify " + args[0] + " " + args[1]
			var root []byte
			switch {
			case len(args) == 3 && f.rootHashFile != "":
				return usagef("verity verify: give ROOTHASH or --root-hash-file, not both")
			case len(args) == 3:
				var err error
				if root, err = verity.ParseRootHash(args[2]); err != nil {
					return usagef("verity verify: ROOTHASH: %v", err)
				}
			case f.rootHashFile != "":
				b, err := readRootHashFile(cmd, f.rootHashFile)
				if err != nil {
					return verityErr(op, err)
				}
				if root, err = verity.ParseRootHash(strings.TrimSpace(string(b))); err != nil {
					return verityErr(op, fmt.Errorf("%s: %w", f.rootHashFile, err))
				}
			default:
				return usagef("verity verify: give ROOTHASH or --root-hash-file")
			}
			opts, err := f.verifyOptions(cmd)
			if err != nil {
				return err
			}
			set := &atomicfile.Set{}
			defer set.Abort()
			writeJSON, err := f.json.stage(set)
			if err != nil {
				return verityErr(op, err)
			}
			res, err := verityVerify(cmd, args[0], args[1], root, opts)
			if err != nil {
				return verityErr(op, err)
			}
			if err := writeJSON(res); err != nil {
				return verityErr(op, err)
			}
			if err := set.Commit(); err != nil {
				return verityErr(op, err)
			}
			if f.json.toStdout() {
				return printJSON(cmd.OutOrStdout(), res)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: %d data blocks and %d hash blocks match root hash %s\n",
				args[0], res.DataBlocks, res.HashBlocks, res.RootHashHex())
			return err
		},
	}
	f.register(cmd)
	cmd.Flags().Lookup("salt").Usage = `salt in hex, or "-" for none (with --no-superblock)`
	cmd.Flags().StringVar(&f.uuid, "uuid", "", "expected superblock UUID")
	cmd.Flags().StringVar(&f.rootHashFile, "root-hash-file", "", "read the root hash (hex) from this file (- for stdin)")
	return cmd
}

// verifyOptions turns the flags of verify into what pkg/verity checks:
// with a superblock only the flags given, which must agree with it.
func (f *verityFlags) verifyOptions(cmd *cobra.Command) (verity.VerifyOptions, error) {
	if err := f.checkFlags(cmd); err != nil {
		return verity.VerifyOptions{}, err
	}
	var opts verity.VerifyOptions
	p := &opts.Params
	if f.noSuperblock {
		*p = f.params()
		if !flagChanged(cmd, "salt") {
			return opts, usagef("%s: --no-superblock needs --salt (\"-\" for none)", commandName(cmd))
		}
	} else {
		p.HashOffset = f.hashOffset
		p.DataBlocks = f.dataBlocks
		if flagChanged(cmd, "hash") {
			p.HashAlgorithm = f.hash
		}
		if flagChanged(cmd, "format") {
			p.HashType, opts.CheckHashType = f.format, true
		}
		if flagChanged(cmd, "data-block-size") {
			p.DataBlockSize = f.dataBlockSize
		}
		if flagChanged(cmd, "hash-block-size") {
			p.HashBlockSize = f.hashBlockSize
		}
	}
	var err error
	if flagChanged(cmd, "salt") {
		if p.Salt, err = verity.ParseSalt(f.salt); err != nil {
			return opts, verityFlagErr(cmd, "salt", err)
		}
	}
	if flagChanged(cmd, "uuid") {
		if p.UUID, err = verity.ParseUUID(f.uuid); err != nil {
			return opts, verityFlagErr(cmd, "uuid", err)
		}
	}
	return opts, nil
}

func verityVerify(cmd *cobra.Command, dataPath, hashPath string, root []byte, opts verity.VerifyOptions) (*verity.Result, error) {
	data, size, err := openData(dataPath)
	if err != nil {
		return nil, err
	}
	defer data.Close()
	hash, err := os.Open(hashPath)
	if err != nil {
		return nil, err
	}
	defer hash.Close()
	res, err := verity.Verify(cmd.Context(), data, size, hash, root, opts)
	if err != nil {
		return nil, err
	}
	res.DataDevice, res.HashDevice = dataPath, hashPath
	return res, nil
}

func newVerityDumpCmd() *cobra.Command {
	var hashOffset uint64
	var asJSON jsonFlag
	cmd := &cobra.Command{
		Use:   "dump HASH",
		Short: "Show the verity superblock of HASH",
		Long: `Show the verity superblock at --hash-offset of HASH and the layout of the tree
it describes, as "veritysetup dump" does.`,
		Example: `  imagebuilder verity dump rootfs.verity`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "-" {
				return usagef("verity dump: HASH -: stdin is not supported; give a file name")
			}
			if err := checkVerityArgs(cmd, nil, asJSON.path); err != nil {
				return err
			}
			if hashOffset%512 != 0 {
				return usagef("verity dump: --hash-offset: hash offset %d is not a multiple of 512", hashOffset)
			}
			op := "verity dump " + args[0]
			set := &atomicfile.Set{}
			defer set.Abort()
			writeJSON, err := asJSON.stage(set)
			if err != nil {
				return verityErr(op, err)
			}
			h, err := os.Open(args[0])
			if err != nil {
				return verityErr("verity dump", err)
			}
			defer h.Close()
			res, err := verity.Dump(h, hashOffset)
			if err != nil {
				return verityErr(op, err)
			}
			if err := writeJSON(res); err != nil {
				return verityErr(op, err)
			}
			if err := set.Commit(); err != nil {
				return verityErr(op, err)
			}
			if asJSON.toStdout() {
				return printJSON(cmd.OutOrStdout(), res)
			}
			return printVerityText(cmd.OutOrStdout(), args[0], res)
		},
	}
	cmd.Flags().Uint64Var(&hashOffset, "hash-offset", 0, "byte offset of the superblock in HASH")
	addJSONFlag(cmd, &asJSON)
	return cmd
}

// maxRootHashFile bounds what --root-hash-file reads: a root hash is at
// most 128 hex digits (sha512); the rest is room for white space.
const maxRootHashFile = 4096

// readRootHashFile reads the root hash file (stdin for "-"), refusing
// more than maxRootHashFile bytes instead of reading whatever it holds.
func readRootHashFile(cmd *cobra.Command, name string) ([]byte, error) {
	var r io.Reader = cmd.InOrStdin()
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxRootHashFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > maxRootHashFile {
		return nil, fmt.Errorf("%s: more than %d bytes: not a root hash file", name, maxRootHashFile)
	}
	return b, nil
}
