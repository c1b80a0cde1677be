module github.com/imagestore/imagestore

go 1.26
