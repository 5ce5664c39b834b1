// Package nft blocks hosts with nftables sets.
package nft

import _ "github.com/google/nftables" // pinned: see DESIGN.md for why this pseudo-version
