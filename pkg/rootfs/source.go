package rootfs

import "github.com/imagebuilder/imagebuilder/pkg/source"

// SourceKinds lists the source forms Build accepts, for help texts.
//
// Deprecated: use source.Kinds.
const SourceKinds = source.Kinds

// SourceOptions say how sources are read.
//
// Deprecated: use source.Options; this alias remains for callers not yet
// switched to pkg/source.
type SourceOptions = source.Options
