package meter

import "testing"

func TestStep(t *testing.T) {
	var calls [][3]int64
	var names []string
	fn := func(step string, done, total int64) {
		names = append(names, step)
		calls = append(calls, [3]int64{done, total})
	}
	s := Start(fn, "x", 3<<20)
	s.Add(1)         // below the reporting interval
	s.Add(every)     // reported: 1 MiB + 1
	s.Add(0)         // nothing
	s.Add(2<<20 - 1) // reported: 3 MiB
	s.End()          // already reported
	want := [][3]int64{{0, 3 << 20}, {every + 1, 3 << 20}, {3 << 20, 3 << 20}}
	if len(calls) != len(want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] || names[i] != "x" {
			t.Errorf("call %d: %s %v, want x %v", i, names[i], calls[i], want[i])
		}
	}
	calls = nil
	s = Start(fn, "y", 0)
	s.Add(5)
	s.End()
	if len(calls) != 2 || calls[1] != [3]int64{5, 0} {
		t.Errorf("End did not report the last count: %v", calls)
	}
	// No callback: a nil step that does nothing.
	none := Start(nil, "z", 1)
	none.Add(1)
	none.End()
	if none != nil {
		t.Error("Start without a callback returned a step")
	}
}
