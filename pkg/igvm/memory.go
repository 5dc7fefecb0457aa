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
	f     *File
	pages map[uint64]*PageData // page-aligned GPA -> header
}

// Memory indexes the file's PAGE_DATA directives. Page contents are read
// from the file only when ReadAt asks for them.
func (f *File) Memory() *Memory {
	m := &Memory{f: f, pages: map[uint64]*PageData{}}
	for _, h := range f.Directives() {
		if p, ok := h.(*PageData); ok {
			for off := uint64(0); off < p.PageSize(); off += PageSize4K {
				m.pages[p.GPA+off] = p
			}
		}
	}
	return m
}

// Loaded reports whether the 4 KiB page holding gpa is loaded.
func (m *Memory) Loaded(gpa uint64) bool {
	_, ok := m.pages[gpa&^(PageSize4K-1)]
	return ok
}

// Pages returns the loaded 4 KiB page addresses in ascending order.
func (m *Memory) Pages() []uint64 {
	out := make([]uint64, 0, len(m.pages))
	for g := range m.pages {
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
		h, ok := m.pages[page]
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
