// Package testvectors loads the igvm-tooling vectors in testdata/igvm
// (index.json, the IGVM files igvmgen wrote and their inputs) for the
// tests of pkg/igvm, pkg/igvm/inspect, pkg/igvm/linuxboot and pkg/measure.
// It is only imported by tests.
package testvectors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// NumCases is the number of cases in testdata/igvm/index.json.
const NumCases = 6

// Case is one entry of index.json: igvmgen's inputs and options, the file
// it wrote, its launch digest and the layout facts the tests check.
type Case struct {
	Name                 string  `json:"name"`
	Kernel               string  `json:"kernel"`
	Initrd               *string `json:"initrd"`
	Append               string  `json:"append"`
	ACPI                 string  `json:"acpi"`
	IGVMFile             string  `json:"igvm_file"`
	IGVMSize             int64   `json:"igvm_size"`
	IGVMSHA256           string  `json:"igvm_sha256"`
	ExpectedLaunchDigest string  `json:"expected_launch_digest"`
	Options              Options `json:"options"`
	Layout               Layout  `json:"layout"`
}

// Options are igvmgen's flags (1 set, 0 not).
type Options struct {
	PvalidateOpt  int `json:"pvalidate_opt"`
	EncryptedPage int `json:"encrypted_page"`
	SVME          int `json:"svme"`
}

// Layout is where igvmgen put things (hex strings as in index.json).
type Layout struct {
	VariableHeaders int      `json:"variable_headers"`
	PageDataHeaders int      `json:"page_data_headers"`
	VMSAGPA         string   `json:"vmsa_gpa"`
	RIP             string   `json:"rip"`
	RSP             string   `json:"rsp"`
	CR3             string   `json:"cr3"`
	EFER            string   `json:"efer"`
	SEVFeatures     string   `json:"sev_features"`
	BootParams      string   `json:"boot_params_gpa"`
	CmdlineGPA      string   `json:"cmdline_gpa"`
	CmdlineSize     uint32   `json:"cmdline_size_field"`
	RamdiskGPA      string   `json:"ramdisk_gpa"`
	RamdiskSize     uint64   `json:"ramdisk_size"`
	CCBlob          string   `json:"cc_blob_gpa"`
	ACPIRSDP        string   `json:"acpi_rsdp_addr"`
	HighestGPA      string   `json:"highest_gpa"`
	E820            [][3]any `json:"e820"`
}

// Dir is the absolute path of testdata/igvm.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "igvm")
}

// Path returns the absolute path of rel inside testdata/igvm.
func Path(rel string) string { return filepath.Join(Dir(), rel) }

// Read reads rel inside testdata/igvm.
func Read(tb testing.TB, rel string) []byte {
	tb.Helper()
	b, err := os.ReadFile(Path(rel))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Cases reads index.json and checks it holds NumCases cases.
func Cases(tb testing.TB) []Case {
	tb.Helper()
	var idx struct {
		Cases []Case `json:"cases"`
	}
	if err := json.Unmarshal(Read(tb, "index.json"), &idx); err != nil {
		tb.Fatal(err)
	}
	if len(idx.Cases) != NumCases {
		tb.Fatalf("index.json has %d cases, want %d", len(idx.Cases), NumCases)
	}
	return idx.Cases
}

// IGVMPath is the path of the IGVM file igvmgen wrote for the case.
func (c Case) IGVMPath() string { return Path(filepath.Base(c.IGVMFile)) }

// ReadIGVM reads the IGVM file igvmgen wrote for the case.
func (c Case) ReadIGVM(tb testing.TB) []byte {
	tb.Helper()
	return Read(tb, filepath.Base(c.IGVMFile))
}

// Input reads one of the case's inputs (kernel, initrd) by the name
// index.json gives it, from testdata/igvm/inputs.
func Input(tb testing.TB, name string) []byte {
	tb.Helper()
	return Read(tb, filepath.Join("inputs", filepath.Base(name)))
}
