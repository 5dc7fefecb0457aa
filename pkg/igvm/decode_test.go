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
