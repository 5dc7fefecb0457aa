package initrd

import (
	"encoding/binary"
	"io"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

// noReaderAtFS hides the files' ReadAt, so modules are read whole.
type noReaderAtFS struct{ fs.FS }

type plainFile struct{ fs.File }

func (f noReaderAtFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(f.FS, name) }

func (f noReaderAtFS) Open(name string) (fs.File, error) {
	file, err := f.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return plainFile{file}, nil
}

// countingFS counts the bytes read from its files, through Read and ReadAt.
type countingFS struct {
	fs.FS
	n *int64
}

func (f countingFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(f.FS, name) }

type countingFile struct {
	fs.File
	n *int64
}

func (f countingFS) Open(name string) (fs.File, error) {
	file, err := f.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return countingFile{file, f.n}, nil
}

func (f countingFile) Read(b []byte) (int, error) {
	n, err := f.File.Read(b)
	*f.n += int64(n)
	return n, err
}

func (f countingFile) ReadAt(b []byte, off int64) (int, error) {
	n, err := f.File.(io.ReaderAt).ReadAt(b, off)
	*f.n += int64(n)
	return n, err
}

// TestModinfoInPlace: .modinfo read in place (ELF header, section headers,
// the section) is what reading the whole module gives, costs the section
// rather than the module, and a section declared beyond the file or over
// maxModinfo is an error, not an allocation of its size.
func TestModinfoInPlace(t *testing.T) {
	ko := makeKO("alias=fs-erofs", "depends=crc32c_generic,dm-bufio", "softdep=pre: crc32c post: x", "license=GPL")
	padded := append(ko, make([]byte, 1<<20)...) // a module's code and data after the section headers
	files := fstest.MapFS{
		"modules.order":            {Data: []byte("kernel/fs/erofs/erofs.ko\n")},
		"kernel/fs/erofs/erofs.ko": {Data: padded},
	}
	open := func(fsys fs.FS) *ModuleSet {
		ms, err := OpenModulesFS(t.Context(), fsys, "6.99.0-test")
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	var read int64
	inPlace, err := open(countingFS{files, &read}).modinfo("erofs")
	if err != nil {
		t.Fatal(err)
	}
	whole, err := open(noReaderAtFS{files}).modinfo("erofs")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(inPlace, whole) || len(inPlace.depends) != 2 || len(inPlace.softpre) != 1 || len(inPlace.aliases) != 1 {
		t.Fatalf("in place %+v, whole %+v", inPlace, whole)
	}
	if read > 64<<10 {
		t.Errorf("read %d bytes of a %d-byte module for its .modinfo", read, len(padded))
	}

	// .modinfo's size (section header 1, offset 32) set beyond the file
	// and to 1 TiB.
	shOff := binary.LittleEndian.Uint64(ko[40:])
	for _, size := range []uint64{uint64(len(padded)), 1 << 40} {
		bad := append([]byte(nil), padded...)
		binary.LittleEndian.PutUint64(bad[shOff+64+32:], size)
		files["kernel/fs/erofs/erofs.ko"] = &fstest.MapFile{Data: bad}
		for _, fsys := range []fs.FS{files, noReaderAtFS{files}} {
			if _, err := open(fsys).modinfo("erofs"); err == nil || !strings.Contains(err.Error(), "erofs") {
				t.Errorf(".modinfo of %d bytes: %v", size, err)
			}
		}
	}
}
