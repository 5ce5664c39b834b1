.PHONY: build run test deb deb-test piuparts fuzz clean
VERSION ?= $(shell scripts/version.sh)
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$(VERSION)" -o bin/portsentry ./cmd/portsentry
run:
	scripts/run.sh
test:
	scripts/test.sh
# dist/portsentry_<version>_amd64.deb and _arm64.deb; ARCHES="amd64" builds one.
deb:
	scripts/build-deb.sh $(ARCHES)
# Debian's portsentry 1.2 upgraded to ours, and purged, in a throwaway chroot.
deb-test:
	scripts/test-deb.sh
# piuparts: install/purge, and 1.2 from the Debian mirror upgraded to ours (~50 s).
piuparts:
	scripts/piuparts-deb.sh
clean:
	rm -rf bin dist/build
