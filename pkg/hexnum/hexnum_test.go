package hexnum

import (
	"encoding/json"
	"fmt"
	"testing"
)

func TestJSON(t *testing.T) {
	type rec struct {
		Policy Uint64 `json:"policy"`
		Zero   Uint64 `json:"zero"`
	}
	b, err := json.Marshal(rec{Policy: 0x3001f})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"policy":"0x3001f","zero":"0x0"}` {
		t.Fatalf("marshal: %s", b)
	}
	for _, in := range []string{`{"policy":"0x3001F"}`, `{"policy":196639}`, `{"policy":"196639"}`} {
		var r rec
		if err := json.Unmarshal([]byte(in), &r); err != nil || r.Policy != 0x3001f {
			t.Errorf("unmarshal %s: %v %v", in, r.Policy, err)
		}
	}
	for _, in := range []string{`{"policy":"0x"}`, `{"policy":"x1"}`, `{"policy":-1}`, `{"policy":"0x1ffffffffffffffff"}`} {
		var r rec
		if err := json.Unmarshal([]byte(in), &r); err == nil {
			t.Errorf("unmarshal %s accepted: %v", in, r.Policy)
		}
	}
}

func ExampleUint64() {
	v, _ := Parse("196639")
	b, _ := json.Marshal(struct {
		Policy Uint64 `json:"policy"`
	}{Uint64(v)})
	fmt.Println(string(b))
	// Output: {"policy":"0x3001f"}
}
