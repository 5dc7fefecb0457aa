package measure

import (
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// The two primitive vectors of google/gce-tcb-verifier's tests (see
// testdata/README.md): three NORMAL pages with "LGTM" markers and three
// ZERO pages.
func TestChainPrimitiveVectors(t *testing.T) {
	lgtm := []byte("LGTMLGTMLGTMLGTM")
	region := make([]byte, 3*snp.PageSize)
	copy(region, lgtm)
	copy(region[len(region)-16:], lgtm)

	tests := []struct {
		name string
		add  func(c *Chain) error
		want string
	}{
		{"normal LGTM 12KiB at 0", func(c *Chain) error { return c.AddRange(0, snp.PageNormal, region) },
			"cba1cd767c33b30f96271837dbbae4081a945464a5af397b9b0336b5d8759ee88cc6b62c05d915c4424a9ac5747437d4"},
		{"normal LGTM page by page", func(c *Chain) error {
			for i := 0; i < 3; i++ {
				if err := c.AddPage(uint64(i)*snp.PageSize, snp.PageNormal, region[i*snp.PageSize:(i+1)*snp.PageSize]); err != nil {
					return err
				}
			}
			return nil
		}, "cba1cd767c33b30f96271837dbbae4081a945464a5af397b9b0336b5d8759ee88cc6b62c05d915c4424a9ac5747437d4"},
		{"three zero pages at 0x9000", func(c *Chain) error { return c.AddPages(0x9000, snp.PageZero, 3) },
			"4bfe18477ba370a50329da74b9621e721c4f29663176e08fbcf088a17c1bc45f133898b86d5082acbe202a6e9419808a"},
		{"three zero pages one by one", func(c *Chain) error {
			for _, gpa := range []uint64{0x9000, 0xa000, 0xb000} {
				if err := c.AddPage(gpa, snp.PageZero, []byte("ignored")); err != nil {
					return err
				}
			}
			return nil
		}, "4bfe18477ba370a50329da74b9621e721c4f29663176e08fbcf088a17c1bc45f133898b86d5082acbe202a6e9419808a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewChain(Digest{})
			if err := tc.add(c); err != nil {
				t.Fatal(err)
			}
			if got := c.Digest().String(); got != tc.want {
				t.Errorf("digest %s, want %s", got, tc.want)
			}
			if c.Pages() != 3 {
				t.Errorf("pages %d, want 3", c.Pages())
			}
		})
	}
}

// Continuing from a given digest equals measuring in one chain.
func TestChainContinue(t *testing.T) {
	one := NewChain(Digest{})
	must(t, one.AddPages(0x9000, snp.PageZero, 1))
	rest := NewChain(one.Digest())
	must(t, rest.AddPages(0xa000, snp.PageZero, 2))
	if got, want := rest.Digest().String(), "4bfe18477ba370a50329da74b9621e721c4f29663176e08fbcf088a17c1bc45f133898b86d5082acbe202a6e9419808a"; got != want {
		t.Errorf("continued digest %s, want %s", got, want)
	}
}

// Each page type gives a different record; NORMAL over nil equals NORMAL
// over an explicit zero page; contents of non-hashed types are ignored.
func TestChainPageTypes(t *testing.T) {
	seen := map[Digest]snp.PageType{}
	for _, pt := range []snp.PageType{snp.PageNormal, snp.PageVMSA, snp.PageZero, snp.PageUnmeasured, snp.PageSecrets, snp.PageCPUID} {
		c := NewChain(Digest{})
		must(t, c.AddPage(0x1000, pt, nil))
		if prev, dup := seen[c.Digest()]; dup {
			t.Errorf("%v and %v give the same digest", pt, prev)
		}
		seen[c.Digest()] = pt
	}
	a, b := NewChain(Digest{}), NewChain(Digest{})
	must(t, a.AddPage(0, snp.PageNormal, nil))
	must(t, b.AddPage(0, snp.PageNormal, make([]byte, snp.PageSize)))
	if a.Digest() != b.Digest() {
		t.Error("nil page and zero page differ")
	}
	c := NewChain(Digest{})
	must(t, c.AddPages(0, snp.PageNormal, 1))
	if a.Digest() != c.Digest() {
		t.Error("AddPages NORMAL differs from AddPage over zeros")
	}
}

func TestChainErrors(t *testing.T) {
	c := NewChain(Digest{})
	if err := c.AddPage(0x1001, snp.PageNormal, nil); err == nil {
		t.Error("unaligned GPA accepted")
	}
	if err := c.AddPage(0, snp.PageType(7), nil); err == nil {
		t.Error("page type 7 accepted")
	}
	if err := c.AddPage(0, snp.PageNormal, make([]byte, snp.PageSize+1)); err == nil {
		t.Error("oversized page accepted")
	}
	if err := c.AddPageHash(0, snp.PageZero, Digest{1}); err == nil {
		t.Error("ZERO page with a contents hash accepted")
	}
	if c.Pages() != 0 || c.Digest() != (Digest{}) {
		t.Error("failed adds changed the chain")
	}
}

func TestParseDigest(t *testing.T) {
	s := "4bfe18477ba370a50329da74b9621e721c4f29663176e08fbcf088a17c1bc45f133898b86d5082acbe202a6e9419808a"
	d, err := snp.ParseDigest("0x" + s)
	if err != nil || d.String() != s {
		t.Fatalf("ParseDigest: %v %s", err, d)
	}
	if _, err := snp.ParseDigest("abcd"); err == nil {
		t.Error("short digest accepted")
	}
	if _, err := snp.ParseDigest(s[:95] + "g"); err == nil {
		t.Error("non-hex digest accepted")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
