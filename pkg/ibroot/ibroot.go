// Package ibroot is the boot contract between a root disk and the guest
// init (cmd/guest-init): the ibroot.* kernel command-line parameters that
// name the dm-verity root. pkg/rootfs writes them with Format; the guest
// init reads them with Parse. See docs/guest-init.md.
//
//	ibroot.hash=<root hash hex> ibroot.salt=<hex|-> ibroot.alg=sha256
//	ibroot.blocks=<data blocks> ibroot.bs=<data block size>
//	ibroot.hashbs=<hash block size> ibroot.hashstart=<first hash block>
//	[ibroot.fstype=erofs|ext4|squashfs] [ibroot.timeout=10]
//	[ibroot.init=/sbin/init] [ibroot.corruption=panic|eio]
//
// The data and hash partitions are found by their GPT partition UUIDs:
// the first and the last 128 bits of the root hash.
package ibroot

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Corruption policies of the dm-verity target.
const (
	// CorruptionPanic makes the kernel panic on a block that does not
	// match the hash tree (dm-verity's panic_on_corruption); the default.
	CorruptionPanic = "panic"
	// CorruptionEIO fails the read with EIO instead.
	CorruptionEIO = "eio"
)

// Defaults that Parse fills in and Format leaves out.
const (
	DefaultAlg     = "sha256"
	DefaultTimeout = 10 // seconds
	DefaultInit    = "/sbin/init"
)

// Params are the ibroot.* kernel parameters.
type Params struct {
	// RootHash is the dm-verity root hash, 32 to 128 bytes.
	RootHash []byte
	// Salt is the verity salt; nil or empty is written "-".
	Salt []byte
	// Alg is the hash algorithm (DefaultAlg when empty).
	Alg string
	// DataBlocks is the number of data blocks the verity device covers.
	DataBlocks uint64
	// DataBlockSize and HashBlockSize are powers of two from 512 to 1 MiB.
	DataBlockSize uint32
	HashBlockSize uint32
	// HashStart is the first hash-tree block on the hash partition, in
	// hash blocks (1 when a verity superblock precedes the tree).
	HashStart uint64
	// FSType is erofs, ext4 or squashfs; empty means recognise it by magic.
	FSType string
	// Timeout is how long the init waits for the disk, in seconds (1 to
	// 3600; 0 means DefaultTimeout).
	Timeout int
	// Init is the absolute path of the program to execute in the new root
	// (DefaultInit when empty).
	Init string
	// Corruption is CorruptionPanic or CorruptionEIO (empty means panic).
	Corruption string
}

// DataPartUUID and HashPartUUID are the GPT partition UUIDs (in string
// byte order) of the data and hash partitions: the first and the last
// 128 bits of the root hash. Both need a valid RootHash.
func (p *Params) DataPartUUID() (u [16]byte) { copy(u[:], p.RootHash[:16]); return }

// HashPartUUID: see DataPartUUID.
func (p *Params) HashPartUUID() (u [16]byte) { copy(u[:], p.RootHash[len(p.RootHash)-16:]); return }

// Sectors is the length of the verity device in 512-byte sectors.
func (p *Params) Sectors() uint64 { return p.DataBlocks * uint64(p.DataBlockSize) / 512 }

// VerityTable returns the dm-verity target parameters for the given data
// and hash devices ("MAJOR:MINOR" or a path), as
// Documentation/admin-guide/device-mapper/verity.rst lists them.
func (p *Params) VerityTable(dataDev, hashDev string) string {
	salt := "-"
	if len(p.Salt) > 0 {
		salt = hex.EncodeToString(p.Salt)
	}
	t := fmt.Sprintf("1 %s %s %d %d %d %d %s %s %s", dataDev, hashDev, p.DataBlockSize, p.HashBlockSize,
		p.DataBlocks, p.HashStart, p.alg(), hex.EncodeToString(p.RootHash), salt)
	if p.corruption() == CorruptionPanic {
		t += " 1 panic_on_corruption"
	}
	return t
}

func (p *Params) alg() string {
	if p.Alg == "" {
		return DefaultAlg
	}
	return p.Alg
}

func (p *Params) corruption() string {
	if p.Corruption == "" {
		return CorruptionPanic
	}
	return p.Corruption
}

// Error is a parameter that is missing or has a bad value.
type Error struct {
	Param string // "ibroot.hash"
	Value string // the value given; empty when missing
	Msg   string // what is wrong; empty when missing
	quote bool
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("missing kernel parameter %s=", e.Param)
	}
	v := e.Value
	if e.quote {
		v = strconv.Quote(v)
	}
	return e.Param + "=" + v + ": " + e.Msg
}

func bad(param, value, msg string) *Error { return &Error{Param: param, Value: value, Msg: msg} }

func badQ(param, value, msg string) *Error {
	return &Error{Param: param, Value: value, Msg: msg, quote: true}
}

// Validate checks every field as Parse does.
func (p *Params) Validate() error {
	if n := len(p.RootHash); n < 32 || n > 128 {
		return bad("ibroot.hash", hex.EncodeToString(p.RootHash), "want the root hash in hex (at least 32 bytes)")
	}
	if len(p.Salt) > 256 {
		return bad("ibroot.salt", hex.EncodeToString(p.Salt), "want hex (at most 256 bytes) or -")
	}
	if !validAlg(p.alg()) {
		return badQ("ibroot.alg", p.Alg, "want a hash name such as sha256")
	}
	if p.DataBlocks == 0 || p.DataBlocks > 1<<48 {
		return bad("ibroot.blocks", strconv.FormatUint(p.DataBlocks, 10), "out of range")
	}
	for _, f := range []struct {
		k string
		n uint32
	}{{"ibroot.bs", p.DataBlockSize}, {"ibroot.hashbs", p.HashBlockSize}} {
		if !validBlockSize(uint64(f.n)) {
			return bad(f.k, strconv.FormatUint(uint64(f.n), 10), "want a power of two from 512")
		}
	}
	switch p.FSType {
	case "", "erofs", "ext4", "squashfs":
	default:
		return badQ("ibroot.fstype", p.FSType, "want erofs, ext4 or squashfs")
	}
	if p.Timeout != 0 && (p.Timeout < 1 || p.Timeout > 3600) {
		return badQ("ibroot.timeout", strconv.Itoa(p.Timeout), "want seconds from 1 to 3600")
	}
	if p.Init != "" && !strings.HasPrefix(p.Init, "/") {
		return badQ("ibroot.init", p.Init, "want an absolute path")
	}
	if strings.ContainsRune(p.Init, '"') {
		return badQ("ibroot.init", p.Init, "a double quote cannot be written on a kernel command line")
	}
	switch p.Corruption {
	case "", CorruptionPanic, CorruptionEIO:
	default:
		return badQ("ibroot.corruption", p.Corruption, "want panic or eio")
	}
	return nil
}

func validAlg(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
}

func validBlockSize(n uint64) bool { return n >= 512 && n <= 1<<20 && n&(n-1) == 0 }

// Format returns the parameters as kernel command-line words, in a fixed
// order: hash, salt, alg, blocks, bs, hashbs, hashstart, then fstype,
// timeout, init and corruption when they are set and not the default.
func Format(p Params) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	salt := "-"
	if len(p.Salt) > 0 {
		salt = hex.EncodeToString(p.Salt)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ibroot.hash=%s ibroot.salt=%s ibroot.alg=%s ibroot.blocks=%d ibroot.bs=%d ibroot.hashbs=%d ibroot.hashstart=%d",
		hex.EncodeToString(p.RootHash), salt, p.alg(), p.DataBlocks, p.DataBlockSize, p.HashBlockSize, p.HashStart)
	if p.FSType != "" {
		b.WriteString(" ibroot.fstype=" + p.FSType)
	}
	if p.Timeout != 0 && p.Timeout != DefaultTimeout {
		fmt.Fprintf(&b, " ibroot.timeout=%d", p.Timeout)
	}
	if p.Init != "" && p.Init != DefaultInit {
		v := p.Init
		if strings.ContainsAny(v, " \t\n\r") {
			v = `"` + v + `"`
		}
		b.WriteString(" ibroot.init=" + v)
	}
	if p.Corruption != "" && p.Corruption != CorruptionPanic {
		b.WriteString(" ibroot.corruption=" + p.Corruption)
	}
	return b.String(), nil
}

// splitCmdline splits a kernel command line like the kernel does: words
// separated by spaces, double quotes grouping, stopping at "--" (the rest
// is for init).
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			if have {
				if cur.String() == "--" {
					return out
				}
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if have && cur.String() != "--" {
		out = append(out, cur.String())
	}
	return out
}

// Parse reads the ibroot.* parameters from a whole kernel command line;
// other words are ignored, and a parameter given twice takes the last
// value, as for kernel parameters. Defaults are filled in: Alg, Timeout,
// Init and Corruption are never empty in the result. A missing or bad
// parameter is an *Error.
func Parse(cmdline string) (*Params, error) {
	kv := map[string]string{}
	for _, w := range splitCmdline(cmdline) {
		k, v, _ := strings.Cut(w, "=")
		if strings.HasPrefix(k, "ibroot.") {
			kv[k] = v
		}
	}
	p := &Params{Alg: DefaultAlg, Timeout: DefaultTimeout, Init: DefaultInit, Corruption: CorruptionPanic}
	need := func(k string) (string, error) {
		v, ok := kv[k]
		if !ok || v == "" {
			return "", &Error{Param: k}
		}
		return v, nil
	}
	v, err := need("ibroot.hash")
	if err != nil {
		return nil, err
	}
	if p.RootHash, err = hex.DecodeString(v); err != nil || len(p.RootHash) < 32 || len(p.RootHash) > 128 {
		return nil, badQ("ibroot.hash", v, "want the root hash in hex (at least 32 bytes)")
	}
	if v, err = need("ibroot.salt"); err != nil {
		return nil, err
	}
	if v != "-" {
		if p.Salt, err = hex.DecodeString(v); err != nil || len(p.Salt) > 256 {
			return nil, badQ("ibroot.salt", v, "want hex (at most 256 bytes) or -")
		}
		if len(p.Salt) == 0 {
			p.Salt = nil
		}
	}
	if v, ok := kv["ibroot.alg"]; ok {
		if !validAlg(v) {
			return nil, badQ("ibroot.alg", v, "want a hash name such as sha256")
		}
		p.Alg = v
	}
	num := func(k string, bits int) (uint64, error) {
		v, err := need(k)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(v, 10, bits)
		if err != nil {
			return 0, badQ(k, v, "want a decimal number")
		}
		return n, nil
	}
	if p.DataBlocks, err = num("ibroot.blocks", 64); err != nil {
		return nil, err
	}
	if p.DataBlocks == 0 || p.DataBlocks > 1<<48 {
		return nil, bad("ibroot.blocks", strconv.FormatUint(p.DataBlocks, 10), "out of range")
	}
	for _, f := range []struct {
		k string
		p *uint32
	}{{"ibroot.bs", &p.DataBlockSize}, {"ibroot.hashbs", &p.HashBlockSize}} {
		n, err := num(f.k, 32)
		if err != nil {
			return nil, err
		}
		if !validBlockSize(n) {
			return nil, bad(f.k, strconv.FormatUint(n, 10), "want a power of two from 512")
		}
		*f.p = uint32(n)
	}
	if p.HashStart, err = num("ibroot.hashstart", 64); err != nil {
		return nil, err
	}
	if v, ok := kv["ibroot.fstype"]; ok {
		switch v {
		case "erofs", "ext4", "squashfs":
			p.FSType = v
		default:
			return nil, badQ("ibroot.fstype", v, "want erofs, ext4 or squashfs")
		}
	}
	if v, ok := kv["ibroot.timeout"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3600 {
			return nil, badQ("ibroot.timeout", v, "want seconds from 1 to 3600")
		}
		p.Timeout = n
	}
	if v, ok := kv["ibroot.init"]; ok {
		if !strings.HasPrefix(v, "/") {
			return nil, badQ("ibroot.init", v, "want an absolute path")
		}
		p.Init = v
	}
	if v, ok := kv["ibroot.corruption"]; ok {
		switch v {
		case CorruptionPanic, CorruptionEIO:
			p.Corruption = v
		default:
			return nil, badQ("ibroot.corruption", v, "want panic or eio")
		}
	}
	return p, nil
}
