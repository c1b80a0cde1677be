module github.com/imagestore/imagestore

go 1.26.0

require (
	github.com/klauspost/compress v1.20.4
	golang.org/x/image v0.48.0
)

require golang.org/x/crypto v0.59.0 // indirect
