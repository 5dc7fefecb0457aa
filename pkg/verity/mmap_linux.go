package verity

import "syscall"

const mapPopulate = syscall.MAP_POPULATE
