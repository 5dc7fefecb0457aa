package igvm

import (
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// TestBodyDecoderMatchesBinary checks the hand-written body decoder against
// encoding/binary for every known header type, over random bodies.
func TestBodyDecoderMatchesBinary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var d bodyDecoder
	types := slices.Sorted(maps.Keys(bodySizes))
	for _, typ := range types {
		size := bodySizes[typ]
		for range 200 {
			body := make([]byte, size)
			for i := range body {
				body[i] = byte(rng.Uint32())
			}
			got, err := d.decode(typ, body)
			if err != nil {
				t.Fatalf("%v: %v", typ, err)
			}
			want := newBody(typ)
			if _, err := binary.Decode(body, binary.LittleEndian, want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%v: decoded %+v, encoding/binary gives %+v", typ, got, want)
			}
		}
	}
	if _, err := d.decode(HeaderType(0x3ff), nil); err == nil {
		t.Error("unknown type decoded without error")
	}
}

// TestAppendBodyMatchesBinary checks the hand-written body encoder against
// encoding/binary for every known header type, and that it sets
// file_offset.
func TestAppendBodyMatchesBinary(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, typ := range slices.Sorted(maps.Keys(bodySizes)) {
		for range 200 {
			body := make([]byte, bodySizes[typ])
			for i := range body {
				body[i] = byte(rng.Uint32())
			}
			h := newBody(typ)
			if _, err := binary.Decode(body, binary.LittleEndian, h); err != nil {
				t.Fatal(err)
			}
			got, err := appendBody([]byte("prefix"), h, fileOffsetOf(h))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "prefix"+string(body) {
				t.Fatalf("%v: encoded %x, want %x", typ, got[6:], body)
			}
			off := rng.Uint32()
			got, err = appendBody(nil, h, off)
			if err != nil {
				t.Fatal(err)
			}
			back := newBody(typ)
			if _, err := binary.Decode(got, binary.LittleEndian, back); err != nil {
				t.Fatal(err)
			}
			if want := withFileOffset(h, off); !reflect.DeepEqual(back, want) {
				t.Fatalf("%v: with file offset %#x: %+v, want %+v", typ, off, back, want)
			}
		}
	}
}
