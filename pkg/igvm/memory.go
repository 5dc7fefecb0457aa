package igvm

import (
	"fmt"
	"sort"
)

// Memory is a read-only view of the guest memory the PAGE_DATA directives
// of a File load, by guest physical address. When several headers load the
// same page, the last one wins. Parameter areas (filled by the loader) and
// VMSAs are not part of it.
type Memory struct {
	f *File
	// 4 KiB and 2 MiB pages by aligned GPA, with the directive index so
	// the later of two overlapping headers wins.
	small, large map[uint64]memPage
}

type memPage struct {
	h   *PageData
	seq int
}

// Memory indexes the file's PAGE_DATA directives (one entry per header, so
// 2 MiB pages cost no more than 4 KiB ones). Page contents are read from
// the file only when ReadAt asks for them.
func (f *File) Memory() *Memory {
	m := &Memory{f: f, small: map[uint64]memPage{}, large: map[uint64]memPage{}}
	for i, h := range f.Directives() {
		if p, ok := h.(*PageData); ok {
			if p.Flags&PageFlag2MB != 0 {
				m.large[p.GPA] = memPage{p, i}
			} else {
				m.small[p.GPA] = memPage{p, i}
			}
		}
	}
	return m
}

// lookup returns the header that loads the 4 KiB page at page.
func (m *Memory) lookup(page uint64) (*PageData, bool) {
	s, okS := m.small[page]
	l, okL := m.large[page&^(PageSize2M-1)]
	switch {
	case okS && okL:
		if l.seq > s.seq {
			return l.h, true
		}
		return s.h, true
	case okS:
		return s.h, true
	case okL:
		return l.h, true
	}
	return nil, false
}

// Page returns the PAGE_DATA header that loads the 4 KiB page holding gpa
// (the last one, when several do).
func (m *Memory) Page(gpa uint64) (*PageData, bool) {
	return m.lookup(gpa &^ (PageSize4K - 1))
}

// Loaded reports whether the 4 KiB page holding gpa is loaded.
func (m *Memory) Loaded(gpa uint64) bool {
	_, ok := m.lookup(gpa &^ (PageSize4K - 1))
	return ok
}

// Pages returns the loaded 4 KiB page addresses in ascending order (a 2 MiB
// page contributes its 512 small pages).
func (m *Memory) Pages() []uint64 {
	set := make(map[uint64]bool, len(m.small))
	for g := range m.small {
		set[g] = true
	}
	for g := range m.large {
		for off := uint64(0); off < PageSize2M; off += PageSize4K {
			set[g+off] = true
		}
	}
	out := make([]uint64, 0, len(set))
	for g := range set {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ReadAt reads len(p) bytes of guest memory at gpa. It fails, returning
// the bytes read so far, at the first page that is not loaded.
func (m *Memory) ReadAt(p []byte, gpa int64) (int, error) {
	if gpa < 0 {
		return 0, fmt.Errorf("igvm: negative gpa %d", gpa)
	}
	n := 0
	for n < len(p) {
		addr := uint64(gpa) + uint64(n)
		page := addr &^ (PageSize4K - 1)
		h, ok := m.lookup(page)
		if !ok {
			return n, fmt.Errorf("igvm: gpa %#x is not loaded by any PAGE_DATA", addr)
		}
		within := addr - h.GPA // offset inside the (possibly 2 MiB) page
		chunk := min(uint64(len(p)-n), PageSize4K-(addr-page))
		if h.FileOffset == 0 {
			clear(p[n : n+int(chunk)])
		} else if _, err := m.f.r.ReadAt(p[n:n+int(chunk)], int64(h.FileOffset)+int64(within)); err != nil {
			return n, fmt.Errorf("igvm: read gpa %#x: %w", addr, err)
		}
		n += int(chunk)
	}
	return n, nil
}
