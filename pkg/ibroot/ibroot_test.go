package ibroot

import (
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const testHash = "e28d9e36c9c16daabf6f72d4e96a3b1234fb20ef99c4f244bf238a1d858e130f"

// TestParse keeps the guest init's parser behaviour (these cases were
// cmd/guest-init's TestParseParams).
func TestParse(t *testing.T) {
	base := "console=ttyS0 ibroot.hash=" + testHash + " ibroot.salt=00ff ibroot.alg=sha256 ibroot.blocks=100 ibroot.bs=4096 ibroot.hashbs=4096 ibroot.hashstart=1 ibroot.fstype=erofs"
	p, err := Parse(base + " quiet ibroot.timeout=3 -- ibroot.init=/not/this")
	if err != nil {
		t.Fatal(err)
	}
	if p.Timeout != 3 || p.Init != "/sbin/init" || p.DataBlocks != 100 || p.FSType != "erofs" || p.Corruption != CorruptionPanic {
		t.Errorf("parsed %+v", p)
	}
	wantTable := "1 254:1 254:2 4096 4096 100 1 sha256 " + testHash + " 00ff 1 panic_on_corruption"
	if got := p.VerityTable("254:1", "254:2"); got != wantTable {
		t.Errorf("table %q\nwant  %q", got, wantTable)
	}
	d, h := p.DataPartUUID(), p.HashPartUUID()
	if hex.EncodeToString(d[:]) != testHash[:32] || hex.EncodeToString(h[:]) != testHash[32:] {
		t.Errorf("partition UUIDs %x %x", d, h)
	}
	if p.Sectors() != 800 {
		t.Errorf("sectors %d", p.Sectors())
	}
	p, err = Parse(strings.Replace(base, "ibroot.salt=00ff", "ibroot.salt=-", 1) + ` ibroot.corruption=eio ibroot.init="/lib/systemd/systemd"`)
	if err != nil {
		t.Fatal(err)
	}
	if p.VerityTable("a", "b") != "1 a b 4096 4096 100 1 sha256 "+testHash+" -" || p.Init != "/lib/systemd/systemd" {
		t.Errorf("table %q init %q", p.VerityTable("a", "b"), p.Init)
	}
	// The last of a repeated parameter wins; quotes group words.
	p, err = Parse(base + ` ibroot.timeout=5 ibroot.timeout=7 ibroot.init="/my init"`)
	if err != nil || p.Timeout != 7 || p.Init != "/my init" {
		t.Errorf("repeated/quoted: %+v %v", p, err)
	}
	for _, c := range []struct{ cmdline, want string }{
		{"console=ttyS0", "missing kernel parameter ibroot.hash="},
		{strings.Replace(base, "ibroot.hash="+testHash, "ibroot.hash=xyz", 1), `ibroot.hash="xyz"`},
		{strings.Replace(base, "ibroot.hash="+testHash, "ibroot.hash="+testHash[:62], 1), `ibroot.hash="` + testHash[:62] + `": want the root hash in hex (at least 32 bytes)`},
		{strings.Replace(base, "ibroot.salt=00ff", "", 1), "missing kernel parameter ibroot.salt="},
		{strings.Replace(base, "ibroot.salt=00ff", "ibroot.salt=0", 1), `ibroot.salt="0": want hex`},
		{strings.Replace(base, "ibroot.alg=sha256", "ibroot.alg=SHA256", 1), `ibroot.alg="SHA256": want a hash name`},
		{strings.Replace(base, "ibroot.blocks=100", "ibroot.blocks=-1", 1), `ibroot.blocks="-1": want a decimal number`},
		{strings.Replace(base, "ibroot.blocks=100", "ibroot.blocks=0", 1), `ibroot.blocks=0: out of range`},
		{strings.Replace(base, "ibroot.bs=4096", "ibroot.bs=1000", 1), "ibroot.bs=1000: want a power of two"},
		{strings.Replace(base, "ibroot.hashbs=4096", "ibroot.hashbs=256", 1), "ibroot.hashbs=256: want a power of two"},
		{strings.Replace(base, "ibroot.fstype=erofs", "ibroot.fstype=xfs", 1), `ibroot.fstype="xfs"`},
		{base + " ibroot.timeout=0", `ibroot.timeout="0"`},
		{base + " ibroot.init=sbin/init", `ibroot.init="sbin/init": want an absolute path`},
		{base + " ibroot.corruption=ignore", `ibroot.corruption="ignore"`},
		{strings.Replace(base, "ibroot.hashstart=1", "", 1), "missing kernel parameter ibroot.hashstart="},
	} {
		_, err := Parse(c.cmdline)
		var pe *Error
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &pe) {
			t.Errorf("%q: error %v, want %q", c.cmdline, err, c.want)
		}
	}
}

// TestFormat: the form pkg/rootfs has always written, and round trips.
func TestFormat(t *testing.T) {
	h, _ := hex.DecodeString(testHash)
	p := Params{RootHash: h, Salt: []byte{0, 0xff}, DataBlocks: 100, DataBlockSize: 4096, HashBlockSize: 4096, HashStart: 1, FSType: "erofs"}
	s, err := Format(p)
	if err != nil {
		t.Fatal(err)
	}
	want := "ibroot.hash=" + testHash + " ibroot.salt=00ff ibroot.alg=sha256 ibroot.blocks=100 ibroot.bs=4096 ibroot.hashbs=4096 ibroot.hashstart=1 ibroot.fstype=erofs"
	if s != want {
		t.Errorf("Format:\n%s\nwant\n%s", s, want)
	}
	for _, q := range []Params{
		p,
		{RootHash: append(h, h...), DataBlocks: 1 << 48, DataBlockSize: 512, HashBlockSize: 1 << 20, Alg: "sha512"},
		{RootHash: h, DataBlocks: 1, DataBlockSize: 4096, HashBlockSize: 4096, Timeout: 3600, Init: "/lib/systemd/sys temd", Corruption: CorruptionEIO, FSType: "squashfs"},
		{RootHash: h, DataBlocks: 1, DataBlockSize: 4096, HashBlockSize: 4096, Timeout: DefaultTimeout, Init: DefaultInit, Corruption: CorruptionPanic},
	} {
		checkRoundTrip(t, q)
	}
	for _, q := range []Params{
		{RootHash: h[:31], DataBlocks: 1, DataBlockSize: 4096, HashBlockSize: 4096},
		{RootHash: h, DataBlocks: 0, DataBlockSize: 4096, HashBlockSize: 4096},
		{RootHash: h, DataBlocks: 1, DataBlockSize: 4095, HashBlockSize: 4096},
		{RootHash: h, DataBlocks: 1, DataBlockSize: 4096, HashBlockSize: 4096, Init: `/a"b`},
		{RootHash: h, DataBlocks: 1, DataBlockSize: 4096, HashBlockSize: 4096, Init: "relative"},
		{RootHash: h, DataBlocks: 1, DataBlockSize: 4096, HashBlockSize: 4096, FSType: "xfs"},
		{RootHash: h, DataBlocks: 1, DataBlockSize: 4096, HashBlockSize: 4096, Timeout: -1},
		{RootHash: h, DataBlocks: 1, DataBlockSize: 4096, HashBlockSize: 4096, Corruption: "ignore"},
		{RootHash: h, DataBlocks: 1, DataBlockSize: 4096, HashBlockSize: 4096, Alg: "SHA 256"},
		{RootHash: h, DataBlocks: 1, DataBlockSize: 4096, HashBlockSize: 4096, Salt: make([]byte, 257)},
	} {
		if s, err := Format(q); err == nil {
			t.Errorf("Format(%+v) = %q, want an error", q, s)
		}
	}
}

// normalized is p with Parse's defaults filled in.
func normalized(p Params) Params {
	if p.Alg == "" {
		p.Alg = DefaultAlg
	}
	if p.Timeout == 0 {
		p.Timeout = DefaultTimeout
	}
	if p.Init == "" {
		p.Init = DefaultInit
	}
	if p.Corruption == "" {
		p.Corruption = CorruptionPanic
	}
	if len(p.Salt) == 0 {
		p.Salt = nil
	}
	return p
}

func checkRoundTrip(t *testing.T, p Params) {
	t.Helper()
	s, err := Format(p)
	if err != nil {
		t.Fatalf("Format(%+v): %v", p, err)
	}
	// Other words around ours do not matter.
	q, err := Parse("console=ttyS0 " + s + " quiet")
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	if want := normalized(p); !reflect.DeepEqual(*q, want) {
		t.Fatalf("round trip of %q:\n got %+v\nwant %+v", s, *q, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("ibroot.hash=" + testHash + " ibroot.salt=- ibroot.blocks=1 ibroot.bs=4096 ibroot.hashbs=4096 ibroot.hashstart=1")
	f.Add("ibroot.hash=" + testHash + ` ibroot.salt=00 ibroot.blocks=1 ibroot.bs=4096 ibroot.hashbs=4096 ibroot.hashstart=1 ibroot.init="/a b" ibroot.corruption=eio ibroot.timeout=9 ibroot.fstype=ext4`)
	f.Add(`a="b c" -- d`)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		// Whatever Parse accepts, Format writes and Parse reads back the same.
		if err := p.Validate(); err != nil {
			if strings.Contains(p.Init, `"`) {
				return // cannot happen: the splitter removes quotes
			}
			t.Fatalf("Parse(%q) accepted what Validate rejects: %v", s, err)
		}
		p.VerityTable("1:1", "1:2")
		p.Sectors()
		p.DataPartUUID()
		p.HashPartUUID()
		checkRoundTrip(t, *p)
	})
}

func ExampleParse() {
	p, err := Parse("console=ttyS0 ibroot.hash=" + testHash + " ibroot.salt=- ibroot.blocks=100 ibroot.bs=4096 ibroot.hashbs=4096 ibroot.hashstart=1 ibroot.fstype=erofs")
	if err != nil {
		fmt.Println(err)
		return
	}
	d := p.DataPartUUID()
	fmt.Printf("data partition %x, init %s, %s\n", d[:4], p.Init, p.VerityTable("254:1", "254:2")[:30])
	// Output: data partition e28d9e36, init /sbin/init, 1 254:1 254:2 4096 4096 100 1
}

func ExampleFormat() {
	h, _ := hex.DecodeString(testHash)
	s, err := Format(Params{RootHash: h, DataBlocks: 100, DataBlockSize: 4096, HashBlockSize: 4096, HashStart: 1, FSType: "erofs"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s)
	// Output: ibroot.hash=e28d9e36c9c16daabf6f72d4e96a3b1234fb20ef99c4f244bf238a1d858e130f ibroot.salt=- ibroot.alg=sha256 ibroot.blocks=100 ibroot.bs=4096 ibroot.hashbs=4096 ibroot.hashstart=1 ibroot.fstype=erofs
}
