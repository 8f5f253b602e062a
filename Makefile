# pgrelay developer targets.
#   make / make build   build bin/relay and bin/edge
#   make demo           run two relays + two edges locally (scripts/demo.sh)
#   make test           full check: gofmt, vet, mod tidy, go test -race (scripts/test.sh)
#                       extra go test flags: make test TEST_ARGS='-run TestX -v'
#   make fmt            gofmt -w the tree
#   make vet            go vet ./...
#   make clean          remove build and coverage output

GO ?= go

.DEFAULT_GOAL := build
.PHONY: build demo test fmt vet clean

build:
	@mkdir -p bin
	$(GO) build -o bin/relay ./cmd/relay
	$(GO) build -o bin/edge ./cmd/edge

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

fmt:
	gofmt -w -l .

vet:
	$(GO) vet ./...

clean:
	rm -rf bin coverage.out coverage.html *.coverprofile *.test
