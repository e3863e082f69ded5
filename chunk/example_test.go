package chunk_test

import (
	"bytes"
	"fmt"
	"io"
	"log"

	"github.com/reprise-backup/reprise/chunk"
)

func ExampleChunker() {
	// A tenant's gear table comes from a secret key, so its chunk
	// boundaries say nothing about content to anyone without the key.
	gear := chunk.NewGear([]byte("tenant secret key"))
	s, err := chunk.NewSplitter(chunk.Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}, gear)
	if err != nil {
		log.Fatal(err)
	}

	// Some deterministic, incompressible-looking input: 4 MiB.
	input := make([]byte, 4<<20)
	x := uint32(1)
	for i := range input {
		x = x*1664525 + 1013904223
		input[i] = byte(x >> 24)
	}

	c := chunk.NewChunker(bytes.NewReader(input), s, nil)
	chunks, total := 0, 0
	for {
		b, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		// b is only valid until the next call to Next: hash, compress
		// or copy it here.
		chunks++
		total += len(b)
	}
	fmt.Printf("%d chunks, %d bytes\n", chunks, total)
	// Output: 54 chunks, 4194304 bytes
}
