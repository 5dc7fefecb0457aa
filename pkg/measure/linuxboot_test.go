package measure

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
)

// TestLinuxbootVectors builds every igvm-tooling vector case with our own
// builder (pkg/igvm/linuxboot) from the case's inputs and checks that our
// file's mshv digest equals igvmgen's expected_launch_digest.
func TestLinuxbootVectors(t *testing.T) {
	const dir = "../../testdata/igvm"
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Cases []struct {
			Name     string  `json:"name"`
			Kernel   string  `json:"kernel"`
			Initrd   *string `json:"initrd"`
			Append   string  `json:"append"`
			ACPI     string  `json:"acpi"`
			Expected string  `json:"expected_launch_digest"`
			Options  struct {
				PvalidateOpt  int `json:"pvalidate_opt"`
				EncryptedPage int `json:"encrypted_page"`
				SVME          int `json:"svme"`
			} `json:"options"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	read := func(rel string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range idx.Cases {
		t.Run(c.Name, func(t *testing.T) {
			k, err := linuxboot.ParseBzImage(read(filepath.Join("inputs", filepath.Base(c.Kernel))))
			if err != nil {
				t.Fatal(err)
			}
			opts := linuxboot.Options{
				Cmdline:           c.Append,
				PvalidateOpt:      c.Options.PvalidateOpt == 1,
				EncryptedPage:     c.Options.EncryptedPage == 1,
				SVME:              c.Options.SVME == 1,
				AllowEmptyPayload: true,
			}
			if c.Initrd != nil {
				opts.Initrd = read(filepath.Join("inputs", filepath.Base(*c.Initrd)))
			}
			if c.ACPI == "acpi-clh" {
				a, err := linuxboot.ACPIFromDir(filepath.Join(dir, "acpi", "acpi-clh-aml"))
				if err != nil {
					t.Fatal(err)
				}
				opts.ACPI = a
			}
			img, err := linuxboot.Build(k, opts)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := img.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			res, err := MeasureIGVMFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()), Options{Profile: ProfileMSHV})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Digest.String(); got != c.Expected {
				t.Errorf("our %s: mshv digest %s, igvmgen %s", c.Name, got, c.Expected)
			}
		})
	}
}
