package diff

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/imagebuilder/imagebuilder/pkg/bootparams"
	"github.com/imagebuilder/imagebuilder/pkg/erofs"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

// MaxJSONSize bounds a JSON document compared field by field (a larger
// one is compared as text): decoding holds it in memory several times
// over. Manifests and reference values are a few KiB.
const MaxJSONSize = 16 << 20

// detectSize is how much of an artifact Detect looks at.
const detectSize = 64 << 10

// Detect says what an artifact is from its content: an IGVM file (its
// magic), a root disk (a GPT header at LBA 1), an erofs image (its
// superblock magic), a bzImage ("HdrS" and the boot flag), an initrd (a
// newc archive, or a gzip, zstd or xz stream), a JSON document (at most
// MaxJSONSize bytes, valid), UTF-8 text without NUL bytes, or data.
func Detect(r io.ReaderAt, size int64) (Kind, error) {
	k, _, err := detect(r, size)
	return k, err
}

// detect is Detect that also returns the whole content when it read all
// of it (a small file, a JSON document), so that it is not read again.
func detect(r io.ReaderAt, size int64) (Kind, []byte, error) {
	k, b, err := detectKind(r, size)
	if int64(len(b)) != size {
		b = nil
	}
	return k, b, err
}

func detectKind(r io.ReaderAt, size int64) (Kind, []byte, error) {
	head := make([]byte, min(size, detectSize))
	if n, err := r.ReadAt(head, 0); err != nil && !(err == io.EOF && n == len(head)) {
		return "", nil, fmt.Errorf("reading the first %d bytes: %w", len(head), err)
	}
	le := binary.LittleEndian
	has := func(off int, s string) bool { return len(head) >= off+len(s) && string(head[off:off+len(s)]) == s }
	switch {
	case len(head) >= 4 && le.Uint32(head) == igvm.Magic:
		return KindIGVM, head, nil
	case has(512, "EFI PART"):
		return KindRootDisk, head, nil
	case len(head) >= erofs.SuperblockOffset+4 && le.Uint32(head[erofs.SuperblockOffset:]) == erofs.Magic:
		return KindErofs, head, nil
	case len(head) >= 0x206 && le.Uint32(head[0x202:]) == bootparams.HeaderMagic && le.Uint16(head[0x1fe:]) == bootparams.BootFlagMagic:
		return KindKernel, head, nil
	case has(0, "070701"), has(0, "070702"), has(0, "\x1f\x8b"), has(0, "\x28\xb5\x2f\xfd"), has(0, "\xfd7zXZ\x00"):
		return KindInitrd, head, nil
	}
	if t := bytes.TrimLeft(head, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') && size <= MaxJSONSize {
		doc := head
		if int64(len(head)) < size {
			doc = make([]byte, size)
			if n, err := r.ReadAt(doc, 0); err != nil && !(err == io.EOF && n == len(doc)) {
				return "", nil, fmt.Errorf("reading %d bytes: %w", size, err)
			}
		}
		if json.Valid(doc) {
			return KindJSON, doc, nil
		}
	}
	if isText(head, int64(len(head)) < size) {
		return KindText, head, nil
	}
	return KindData, head, nil
}

// isText says b is UTF-8 without NUL bytes; cut says b may end inside a
// character.
func isText(b []byte, cut bool) bool {
	if bytes.IndexByte(b, 0) >= 0 {
		return false
	}
	if cut {
		// Drop a character cut short at the end.
		for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
			if r, _ := utf8.DecodeLastRune(b); r != utf8.RuneError {
				break
			}
			b = b[:len(b)-1]
		}
	}
	return utf8.Valid(b)
}
