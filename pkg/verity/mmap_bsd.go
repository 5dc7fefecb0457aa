//go:build darwin || freebsd

package verity

const mapPopulate = 0
