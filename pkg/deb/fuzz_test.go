package deb

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Name pieces the fuzzer combines into entry names and link targets:
// ordinary names, the kernel layout, and every way out of a target.
var fuzzTokens = []string{"a", "b", "etc", "./", "/", "..", ".", "//", "boot/vmlinuz-1", "lib/modules/1", "usr/lib/modules/1", "x.ko", "/etc/passwd", "../..", "\x00", "long" + strings.Repeat("n", 120)}

// fuzzEntries turns spec into up to 24 tar entries: per entry a type byte,
// a token count and tokens for the name, tokens for a link target, and a
// body length.
func fuzzEntries(spec []byte) []tarEnt {
	next := func() byte {
		if len(spec) == 0 {
			return 0
		}
		b := spec[0]
		spec = spec[1:]
		return b
	}
	name := func() string {
		var b strings.Builder
		for n := int(next()%4) + 1; n > 0; n-- {
			if b.Len() > 0 && next()%2 == 0 {
				b.WriteByte('/')
			}
			b.WriteString(fuzzTokens[int(next())%len(fuzzTokens)])
		}
		return b.String()
	}
	var ents []tarEnt
	for len(spec) > 0 && len(ents) < 24 {
		t := next()
		e := tarEnt{name: name(), mode: int64(next())<<4 | 0o4}
		switch t % 6 {
		case 0, 1:
			e.typ = tar.TypeReg
			if next()%4 == 0 {
				e.body = fakeBzImage()
			} else {
				e.body = strings.Repeat("z", int(next()))
			}
		case 2:
			e.typ = tar.TypeDir
		case 3:
			e.typ, e.link = tar.TypeSymlink, name()
		case 4:
			e.typ, e.link = tar.TypeLink, name()
		case 5:
			e.typ = []byte{tar.TypeFifo, tar.TypeChar, tar.TypeBlock, tar.TypeGNUSparse, 'x'}[int(t/6)%5]
		}
		ents = append(ents, e)
	}
	return ents
}

// tolerantTar writes what tar.Writer accepts of ents.
func tolerantTar(ents []tarEnt) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		size := int64(0)
		if e.typ == tar.TypeReg {
			size = int64(len(e.body))
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: size, ModTime: time.Unix(1, 0), Format: tar.FormatGNU}
		if tw.WriteHeader(h) != nil {
			continue
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return buf.Bytes()
}

// tarHeaders returns the offsets of the 512-byte blocks of b that are tar
// headers (valid checksum).
func tarHeaders(b []byte) []int {
	var offs []int
	for off := 0; off+512 <= len(b); off += 512 {
		if sum, ok := headerSum(b[off : off+512]); ok && sum > 256 {
			offs = append(offs, off)
		}
	}
	return offs
}

func headerSum(h []byte) (int64, bool) {
	var s int64
	for i, c := range h {
		if i >= 148 && i < 156 {
			c = ' '
		}
		s += int64(c)
	}
	v, err := strconv.ParseInt(strings.Trim(string(h[148:156]), " \x00"), 8, 64)
	return s, err == nil && v == s
}

func fixSum(h []byte) {
	s, _ := headerSum(h)
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", s))
}

// FuzzExtract builds a valid package from the input's structure, mutates
// tar headers (repairing their checksums) and ar headers, and extracts it.
// Whatever the input: no panic, a one-line error starting "deb: ",
// nothing written outside the target, and nothing left after an error.
func FuzzExtract(f *testing.F) {
	f.Add(byte(0), []byte{0, 1, 1, 9, 0, 4, 2, 0, 2, 1, 2, 1, 9, 0, 1}, []byte{})
	f.Add(byte(2), []byte{0, 0, 1, 8, 0, 0, 0, 2, 0, 9, 0, 2, 0, 9, 1, 1, 9, 1, 4, 0, 5}, []byte{})
	f.Add(byte(1), []byte{3, 0, 1, 2, 0, 0, 0, 1, 13, 0, 1, 1, 2, 0, 0, 0, 0, 3}, []byte{1, 0, 100, 7})
	f.Add(byte(6), []byte{4, 0, 1, 0, 0, 1, 5, 0, 0, 1, 0, 7, 4, 0, 2, 1, 0, 3, 0, 9}, []byte{0, 0, 124, '7', 2, 3, 0, 9})
	f.Add(byte(3), bytes.Repeat([]byte{0, 1, 1, 2, 0, 3, 200}, 8), []byte{5, 1, 0, 0})
	f.Fuzz(func(t *testing.T, mode byte, spec, mut []byte) {
		ents := fuzzEntries(spec)
		data := tolerantTar(ents)
		hdrs := tarHeaders(data)
		// Tar mutations: (header, field offset, value) triples.
		var arMut []byte
		for len(mut) >= 3 {
			op := mut[0]
			if op%8 == 5 { // the rest mutates the ar headers
				arMut = mut[1:]
				break
			}
			if len(hdrs) > 0 {
				h := data[hdrs[int(op)%len(hdrs)]:]
				h[int(mut[1])<<1%512] = mut[2]
				fixSum(h[:512])
			}
			mut = mut[3:]
		}
		comp := []Compression{None, Gzip, XZ, Zstd}[mode%4]
		var xzBlock int64
		if comp == XZ && mode&4 != 0 {
			xzBlock = 1024 // many blocks: the parallel decoder
		}
		ctl := makeTar(t, []tarEnt{file("./control", testControl, 0o644)})
		members := []arMem{
			{name: "debian-binary", data: []byte("2.0\n")},
			{name: "control.tar" + suffix(comp), data: compress(t, comp, ctl, 0)},
			{name: "data.tar" + suffix(comp), data: compress(t, comp, data, xzBlock)},
		}
		// ar mutations: (member, what, value) triples.
		for len(arMut) >= 3 {
			m := &members[int(arMut[0])%len(members)]
			switch arMut[1] % 4 {
			case 0:
				m.size = int64(len(m.data)) + int64(int8(arMut[2]))
			case 1:
				members = append(members, *m)
			case 2:
				if len(m.data) > 0 {
					m.data = m.data[:int(arMut[2])%len(m.data)]
				}
			case 3:
				members[0], members[len(members)-1] = members[len(members)-1], members[0]
			}
			arMut = arMut[3:]
		}
		debBytes := makeAr(members)

		base := t.TempDir()
		target := filepath.Join(base, "in", "target")
		os.Mkdir(filepath.Join(base, "in"), 0o755)
		p, err := openBytes(t, debBytes)
		if err == nil {
			if mode&8 != 0 {
				_, err = ExtractKernel(context.Background(), p, target)
			} else {
				_, err = p.Extract(context.Background(), target, ExtractOptions{})
			}
		}
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r") || !strings.HasPrefix(msg, "deb: ") {
				t.Fatalf("error %q: want one line starting with \"deb: \"", msg)
			}
			var fe *FormatError
			if !errors.As(err, &fe) && !errors.Is(err, ErrInsecurePath) && !errors.Is(err, ErrNoKernel) {
				t.Fatalf("error %q (%T) is neither a FormatError, an InsecurePathError nor ErrNoKernel", msg, err)
			}
			if _, serr := os.Lstat(target); serr == nil {
				t.Fatalf("target left behind after %v", err)
			}
		}
		// Nothing anywhere but inside the target.
		filepath.Walk(base, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return nil
			}
			if p != base && p != filepath.Join(base, "in") && p != target && !strings.HasPrefix(p, target+"/") {
				t.Fatalf("%s written outside the target", p)
			}
			if fi.IsDir() {
				os.Chmod(p, 0o755) // so that TempDir can remove it
			}
			return nil
		})
	})
}
