package ibroot

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestDoc keeps docs/guest-init.md true: its parameter table names exactly
// the parameters Parse reads, its example command line parses, and the
// verity table it shows is the one VerityTable gives.
func TestDoc(t *testing.T) {
	b, err := os.ReadFile("../../docs/guest-init.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(ibroot\\.[a-z]+)=").FindAllStringSubmatch(doc, -1) {
		documented = append(documented, m[1])
	}
	sort.Strings(documented)
	// Every parameter Parse reads: each one's bad value is an error naming it.
	known := []string{"ibroot.alg", "ibroot.blocks", "ibroot.bs", "ibroot.corruption", "ibroot.fstype", "ibroot.hash",
		"ibroot.hashbs", "ibroot.hashstart", "ibroot.init", "ibroot.salt", "ibroot.timeout"}
	base := "ibroot.hash=" + testHash + " ibroot.salt=- ibroot.blocks=1 ibroot.bs=4096 ibroot.hashbs=4096 ibroot.hashstart=1"
	for _, k := range known {
		if _, err := Parse(base + " " + k + "=\x01bad"); err == nil || !strings.Contains(err.Error(), k+"=") {
			t.Errorf("%s=<bad>: %v", k, err)
		}
	}
	if strings.Join(documented, " ") != strings.Join(known, " ") {
		t.Errorf("docs/guest-init.md documents %v, Parse reads %v", documented, known)
	}
	blocks := regexp.MustCompile("(?s)```\n(.*?)\n```").FindAllStringSubmatch(doc, -1)
	if len(blocks) != 2 {
		t.Fatalf("want 2 example blocks, found %d", len(blocks))
	}
	p, err := Parse(blocks[0][1])
	if err != nil {
		t.Fatalf("the example: %v", err)
	}
	if s, _ := Format(*p); s != blocks[0][1] {
		t.Errorf("the example is not what Format writes:\n%s\n%s", blocks[0][1], s)
	}
	if got := p.VerityTable("254:1", "254:2"); got != blocks[1][1] {
		t.Errorf("the table example:\n%s\nVerityTable gives\n%s", blocks[1][1], got)
	}
}
