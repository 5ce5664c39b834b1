// Package capture reads packets from an AF_PACKET socket through a kernel BPF filter.
package capture

import _ "golang.org/x/net/bpf" // the filter assembler; keeps the module required
