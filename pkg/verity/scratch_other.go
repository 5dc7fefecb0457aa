//go:build !linux

package verity

func tempScratch(dir string) (scratchFile, error) { return namedScratch(dir) }
