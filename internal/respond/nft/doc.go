// Package nft blocks hosts with nftables, natively over netlink (no nft(8), no shell).
//
// The backend owns one table, inet <Table> (default "portsentry"):
//
//	table inet portsentry {
//		set ban4 { type ipv4_addr; flags interval,timeout; }
//		set ban6 { type ipv6_addr; flags interval,timeout; }
//		set ban6_64 { type ipv6_addr; flags interval,timeout; }   (once a /64 is banned)
//		chain input { type filter hook input priority filter - 10; policy accept;
//			ip saddr @ban4 counter drop comment "portsentry"
//			ip6 saddr @ban6 counter drop comment "portsentry"
//			ip6 saddr @ban6_64 counter drop comment "portsentry" }
//		chain forward { type filter hook forward priority filter - 10; policy accept;
//			(the same rules) }
//	}
//
// A ban is one interval (a start and an end element) with its own timeout, which the
// kernel expires by itself; a permanent ban has none. Hosts are in ban4 and ban6; a
// network of length n in ban4_n or ban6_n, so that bans never overlap within a set
// and each ends exactly when its own record does (sets.go). Bans are committed in
// transactions of at most 1000 elements' worth. Reconcile puts back whatever of this
// has gone from the kernel and removes from the sets what the journal does not hold.
//
// Element changes are built in rawtx.go rather than with the library, because of two
// kernel behaviours found while writing this: a re-add restarts the timeout only when
// it carries an expiration, which the library cannot send; and DESTROYSETELEM (the
// library's SetDestroyElements) corrupts an interval set when the interval it removes
// has expired but is not yet reaped. Bans are therefore removed with DELSETELEM, which
// fails a whole transaction on an absent element, and absent ones are found by
// bisection. Everything else (ruleset, listing, flushing) goes through the library,
// github.com/google/nftables at a pinned pseudo-version (tagged v0.3.0 silently dropped
// elements from large batches, see DESIGN.md).
package nft
