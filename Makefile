.PHONY: build run test fuzz clean
build:
	CGO_ENABLED=0 go build -trimpath -o bin/portsentry ./cmd/portsentry
run:
	scripts/run.sh
test:
	scripts/test.sh
clean:
	rm -rf bin
