package main

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Corruption policies of the dm-verity target.
const (
	policyPanic = "panic"
	policyEIO   = "eio"
)

// params are the ibroot.* kernel command line parameters.
type params struct {
	hash      []byte // root hash
	salt      []byte // nil for "-"
	alg       string
	blocks    uint64 // data blocks
	bs        uint32 // data block size
	hashBS    uint32 // hash block size
	hashStart uint64 // first hash block (in hash blocks) on the hash partition
	fstype    string // "" = detect
	timeout   int    // seconds to wait for the disk
	init      string
	policy    string
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

// parseParams reads the ibroot.* parameters from a kernel command line.
func parseParams(cmdline string) (*params, error) {
	kv := map[string]string{}
	for _, w := range splitCmdline(cmdline) {
		k, v, _ := strings.Cut(w, "=")
		if strings.HasPrefix(k, "ibroot.") {
			kv[k] = v // the last one wins, as for kernel parameters
		}
	}
	p := &params{alg: "sha256", timeout: 10, init: "/sbin/init", policy: policyPanic}
	need := func(k string) (string, error) {
		v, ok := kv[k]
		if !ok || v == "" {
			return "", fmt.Errorf("missing kernel parameter %s=", k)
		}
		return v, nil
	}
	v, err := need("ibroot.hash")
	if err != nil {
		return nil, err
	}
	if p.hash, err = hex.DecodeString(v); err != nil || len(p.hash) < 32 || len(p.hash) > 128 {
		return nil, fmt.Errorf("ibroot.hash=%q: want the root hash in hex (at least 32 bytes)", v)
	}
	if v, err = need("ibroot.salt"); err != nil {
		return nil, err
	}
	if v != "-" {
		if p.salt, err = hex.DecodeString(v); err != nil || len(p.salt) > 256 {
			return nil, fmt.Errorf("ibroot.salt=%q: want hex (at most 256 bytes) or -", v)
		}
	}
	if v, ok := kv["ibroot.alg"]; ok {
		if v == "" || strings.Trim(v, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return nil, fmt.Errorf("ibroot.alg=%q: want a hash name such as sha256", v)
		}
		p.alg = v
	}
	num := func(k string, bits int) (uint64, error) {
		v, err := need(k)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(v, 10, bits)
		if err != nil {
			return 0, fmt.Errorf("%s=%q: want a decimal number", k, v)
		}
		return n, nil
	}
	if p.blocks, err = num("ibroot.blocks", 64); err != nil {
		return nil, err
	}
	if p.blocks == 0 || p.blocks > 1<<48 {
		return nil, fmt.Errorf("ibroot.blocks=%d: out of range", p.blocks)
	}
	for _, f := range []struct {
		k string
		p *uint32
	}{{"ibroot.bs", &p.bs}, {"ibroot.hashbs", &p.hashBS}} {
		n, err := num(f.k, 32)
		if err != nil {
			return nil, err
		}
		if n < 512 || n > 1<<20 || n&(n-1) != 0 {
			return nil, fmt.Errorf("%s=%d: want a power of two from 512", f.k, n)
		}
		*f.p = uint32(n)
	}
	if p.hashStart, err = num("ibroot.hashstart", 64); err != nil {
		return nil, err
	}
	if v, ok := kv["ibroot.fstype"]; ok {
		switch v {
		case "erofs", "ext4", "squashfs":
			p.fstype = v
		default:
			return nil, fmt.Errorf("ibroot.fstype=%q: want erofs, ext4 or squashfs", v)
		}
	}
	if v, ok := kv["ibroot.timeout"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3600 {
			return nil, fmt.Errorf("ibroot.timeout=%q: want seconds from 1 to 3600", v)
		}
		p.timeout = n
	}
	if v, ok := kv["ibroot.init"]; ok {
		if !strings.HasPrefix(v, "/") {
			return nil, fmt.Errorf("ibroot.init=%q: want an absolute path", v)
		}
		p.init = v
	}
	if v, ok := kv["ibroot.corruption"]; ok {
		switch v {
		case policyPanic, policyEIO:
			p.policy = v
		default:
			return nil, fmt.Errorf("ibroot.corruption=%q: want panic or eio", v)
		}
	}
	return p, nil
}

// dataUUID and hashUUID are the PARTUUIDs (as bytes in string order) of
// the data and hash partitions: the first and last 128 bits of the root hash.
func (p *params) dataUUID() []byte { return p.hash[:16] }
func (p *params) hashUUID() []byte { return p.hash[len(p.hash)-16:] }

// table returns the dm-verity target parameters.
func (p *params) table(dataDev, hashDev string) string {
	salt := "-"
	if len(p.salt) > 0 {
		salt = hex.EncodeToString(p.salt)
	}
	t := fmt.Sprintf("1 %s %s %d %d %d %d %s %s %s", dataDev, hashDev, p.bs, p.hashBS,
		p.blocks, p.hashStart, p.alg, hex.EncodeToString(p.hash), salt)
	if p.policy == policyPanic {
		t += " 1 panic_on_corruption"
	}
	return t
}

// sectors is the length of the verity device in 512-byte sectors.
func (p *params) sectors() uint64 { return p.blocks * uint64(p.bs) / 512 }

func uuidString(b []byte) string {
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
