//go:build darwin || freebsd

package verity

const mapWhole = false

func dropPages([]byte) {}
