package diff

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestJSON(t *testing.T) {
	a := `{
  "artifacts": [
    {"name": "rootfs.img", "sha256": "aa", "size": 10},
    {"name": "podvm.igvm", "sha256": "bb", "size": 20}
  ],
  "reference_values": [{"profile": "mshv", "digest": "11"}, {"profile": "kvm", "digest": "22"}],
  "source_date_epoch": 0,
  "labels": {"team": "x", "odd key": true},
  "ratio": 1.0
}`
	for _, tc := range []struct {
		name, b string
		want    []string
	}{
		{"same values, other spelling", `{"ratio": 1, "source_date_epoch": 0e0, "labels": {"odd key": true, "team": "x"},
			"artifacts": [{"name": "podvm.igvm", "sha256": "bb", "size": 20}, {"name": "rootfs.img", "sha256": "aa", "size": 10}],
			"reference_values": [{"profile": "mshv", "digest": "11"}, {"profile": "kvm", "digest": "22"}]}`,
			[]string{"bytes byte 1 content: 318 bytes -> 300 bytes (the same values, written differently)"}},
		{"fields", `{"ratio": 1.5, "source_date_epoch": 1700000000, "labels": {"team": "y"},
			"artifacts": [{"name": "podvm.igvm", "sha256": "cc", "size": 20}, {"name": "initrd.img", "sha256": "dd", "size": 5}],
			"reference_values": [{"profile": "mshv", "digest": "11"}, {"profile": "kvm", "digest": "33"}]}`, []string{
			`.artifacts[name=rootfs.img]: removed: {"name":"rootfs.img","sha256":"aa","size":10}`,
			`.artifacts[name=podvm.igvm].sha256: "bb" -> "cc"`,
			`.artifacts[name=initrd.img]: added: {"name":"initrd.img","sha256":"dd","size":5}`,
			`.labels["odd key"]: removed: true`,
			`.labels.team: "x" -> "y"`,
			`.ratio: 1.0 -> 1.5`,
			`.reference_values[1].digest: "22" -> "33"`,
			`.source_date_epoch: 0 -> 1700000000`,
		}},
		{"type", `[1, 2]`, []string{`.: {"artifacts"` /* prefix */}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := compareBytes(t, []byte(a), []byte(tc.b), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Kind != KindJSON {
				t.Fatalf("kind %s", res.Kind)
			}
			got := primaryLines(res)
			ok := len(got) == len(tc.want)
			for i := 0; ok && i < len(got); i++ {
				ok = strings.HasPrefix(got[i], tc.want[i])
			}
			if !ok {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestTextDataKernel(t *testing.T) {
	kernel, err := os.ReadFile(filepath.Join(testdata, "igvm/inputs/synthetic-bzImage"))
	if err != nil {
		t.Fatal(err)
	}
	k2 := append([]byte(nil), kernel...)
	k2[0x1f1] = 30 // setup_sects
	k3 := append([]byte(nil), kernel...)
	k3[len(k3)-1] ^= 1
	for _, tc := range []struct {
		name string
		a, b []byte
		kind Kind
		want []string
	}{
		{"text", []byte("console=ttyS0 root=/dev/vda\n"), []byte("console=ttyS0 root=/dev/vdb\n"), KindText,
			[]string{`lines line 1: "console=ttyS0 root=/dev/vda" -> "console=ttyS0 root=/dev/vdb" (first difference at byte 26; 28 bytes and 28 bytes in all)`}},
		{"data", []byte{0, 1, 2, 3}, []byte{0, 1, 9}, KindData, []string{
			"bytes content: 4 bytes, sha256 054edec1d0211f624fed0cbca9d4f9400b0e491c43742af2c5b0abebf0c990d8 -> 3 bytes, sha256 "}},
		{"kernel header", kernel, k2, KindKernel, []string{"kernel hdr.setup_sects: 0x3 -> 0x1e"}},
		{"kernel body", kernel, k3, KindKernel, []string{"kernel image content: 18432 bytes, sha256 "}},
		{"kinds", []byte("text\n"), kernel, KindText, []string{"kind: text -> kernel"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := compareBytes(t, tc.a, tc.b, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Kind != tc.kind {
				t.Errorf("kind %s, want %s", res.Kind, tc.kind)
			}
			got := primaryLines(res)
			ok := len(got) == len(tc.want)
			for i := 0; ok && i < len(got); i++ {
				ok = strings.HasPrefix(got[i], tc.want[i])
			}
			if !ok {
				t.Errorf("got\n%s\nwant\n%s", lines(res), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		b    string
		want Kind
	}{
		{"", KindText},
		{"hello\n", KindText},
		{"héllo", KindText},
		{"  {\"a\": 1}\n", KindJSON},
		{"{not json", KindText},
		{"\x00\x01", KindData},
		{"070701", KindInitrd},
		{"\x1f\x8b\x08", KindInitrd},
		{"\x28\xb5\x2f\xfd", KindInitrd},
		{"IGVM", KindIGVM},
		{strings.Repeat("\x00", 512) + "EFI PART", KindRootDisk},
		{strings.Repeat("\x00", 1024) + "\xe2\xe1\xf5\xe0", KindErofs},
	} {
		got, err := Detect(strings.NewReader(tc.b), int64(len(tc.b)))
		if err != nil || got != tc.want {
			t.Errorf("Detect(%q) = %s, %v; want %s", tc.b, got, err, tc.want)
		}
	}
}

// The differences of one comparison are bounded: past maxReport bytes it
// stops, Truncated.
func TestReportBound(t *testing.T) {
	r := &report{}
	long := strings.Repeat("x", 1<<20)
	n := 0
	for r.add(Difference{Path: long}) == nil {
		n++
	}
	if !r.truncated || n < 60 || n > 64 {
		t.Errorf("%d differences of 1 MiB, truncated %v", n, r.truncated)
	}
}
