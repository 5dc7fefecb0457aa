package verity

import "os"

// namedScratch creates a temporary file in dir and removes its name at
// once: the open file stays usable on Unix. Where an open file cannot be
// removed (Windows), the name goes when the file is closed.
func namedScratch(dir string) (scratchFile, error) {
	f, err := os.CreateTemp(dir, ".verity-hash-area-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		return removeOnClose{f}, nil
	}
	return f, nil
}

type removeOnClose struct{ *os.File }

func (r removeOnClose) Close() error {
	err := r.File.Close()
	os.Remove(r.Name())
	return err
}
