package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/imagestore/imagestore/client"
)

func Example() {
	ctx := context.Background()
	c := client.New("http://127.0.0.1:8000", os.Getenv("IMAGESTORE_TOKEN"))

	f, err := os.Open("cat.png")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		log.Fatal(err)
	}
	up, err := c.Upload(ctx, "cat.png", f, st.Size(), &client.UploadOptions{
		IdempotencyKey: "cat.png-v1", // a retry never stores it twice
		Progress:       func(sent, total int64) { fmt.Printf("\r%d/%d bytes", sent, total) },
	})
	switch {
	case errors.Is(err, client.ErrConflict):
		log.Fatal("an image named cat.png exists")
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("stored as", up.ID)

	for img, err := range c.All(ctx, 0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(img.ID, img.Name, img.Width, img.Height)
	}
}

func ExampleError() {
	c := client.New("http://127.0.0.1:8000", os.Getenv("IMAGESTORE_TOKEN"))
	_, err := c.Meta(context.Background(), "x7_K")
	var e *client.Error
	if errors.As(err, &e) {
		fmt.Println(e.StatusCode, e.Type, e.Title, e.Detail)
	}
	if errors.Is(err, client.ErrNotFound) {
		fmt.Println("no such image")
	}
}
