// Command mix writes the deterministic data set of the end-to-end
// comparison with restic and borg (issues #3 and #7), and edits it the same
// way every time.
//
//	go run ./mix -size 1024 -out DIR    # write the mix (DIR must not exist, or be empty)
//	go run ./mix -edit DIR              # apply the scattered edits in place, once
//
// The mix, for -size S MiB (exactly S MiB of file contents):
//
//   - 40% SQL-dump text: 4 files sql/dump-N.sql of 10% each, mysqldump-like
//     (DROP/CREATE TABLE, then one INSERT per line into customers, orders,
//     events and invoices tables, with increasing ids with gaps, names,
//     e-mail addresses, timestamps, amounts, free-text notes and JSON
//     payloads). zstd -1 compresses it about 4.5 times.
//   - 40% random bytes: 4 files blobs/blob-N.bin of 10% each, like databases
//     or archives the application already encrypted (incompressible).
//   - 20% small files of 1 to 64 KiB (uniform) in small/dXX/sYY (10 x 10 leaf
//     directories, 111 directories in all): three quarters text (source
//     code, JSON, CSV, logs, Markdown), one quarter random (like images).
//
// File and directory modification times are fixed (2025-01-01 UTC plus the
// file's index in seconds), so two runs give identical trees.
//
// The edits (-edit), "about 2% scattered": the touched regions should fall
// in about 2% of the data's 1 MiB chunks (the mean chunk size of Reprise and
// restic; borg's is 2 MiB):
//
//   - the large files (SQL and random, 80% of the data) are seen as one
//     concatenated space, cut into n = max(4, round(2% of their size in MiB))
//     equal strata (16 at 1 GiB), and one 100-byte edit falls at a random
//     offset in each: overwrites and insertions in turn (SQL-looking text in
//     the dumps, random bytes in the blobs);
//   - small files: 1% of them get 100 bytes overwritten at a random offset,
//     0.5% are removed, and as many new ones (1 to 64 KiB of text) are added.
//
// Edited files, and directories whose entries changed, get modification
// time 2025-01-02 UTC. Every choice comes from -seed and the tree's sorted
// file list, so editing two copies of the same mix gives the same result.
// -edit refuses a tree it has already edited (one with small/**/new-* files).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	MiB      = 1 << 20
	editSize = 100
)

var (
	baseTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	editTime = baseTime.Add(24 * time.Hour)
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("mix: ")
	size := flag.Int("size", 1024, "size of the mix in MiB")
	out := flag.String("out", "", "write the mix into this `directory` (must not exist, or be empty)")
	edit := flag.String("edit", "", "apply the scattered edits to the mix in this `directory`, in place")
	seed := flag.Uint64("seed", 1, "seed of every random choice")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this `file`")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if (*out == "") == (*edit == "") || flag.NArg() != 0 || *size < 1 {
		fmt.Fprintln(os.Stderr, "usage: mix [-size MiB] [-seed N] -out DIR | -edit DIR")
		os.Exit(2)
	}
	start := time.Now()
	if *out != "" {
		st, err := generate(*out, int64(*size)*MiB, *seed)
		if err != nil {
			pprof.StopCPUProfile()
			log.Fatal(err)
		}
		log.Printf("wrote %s in %s: %s", *out, time.Since(start).Round(time.Millisecond), st)
		return
	}
	st, err := applyEdits(*edit, *seed)
	if err != nil {
		pprof.StopCPUProfile()
		log.Fatal(err)
	}
	log.Printf("edited %s in %s: %s", *edit, time.Since(start).Round(time.Millisecond), st)
}

// ---- generation ----

type genStats struct {
	sqlBytes, blobBytes, smallBytes int64
	sqlFiles, blobFiles, smallFiles int
	dirs                            int
}

func (s genStats) String() string {
	return fmt.Sprintf("%d SQL dumps (%.1f MiB), %d random files (%.1f MiB), %d small files (%.1f MiB), %d dirs",
		s.sqlFiles, mib(s.sqlBytes), s.blobFiles, mib(s.blobBytes), s.smallFiles, mib(s.smallBytes), s.dirs)
}

func mib(n int64) float64 { return float64(n) / MiB }

func generate(dir string, total int64, seed uint64) (genStats, error) {
	var st genStats
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return st, fmt.Errorf("%s is not empty", dir)
	}
	// 4 dumps and 4 blobs of 10% each, the rest in small files.
	part := total / 10
	var fileIdx int64
	mtime := func() time.Time { fileIdx++; return baseTime.Add(time.Duration(fileIdx) * time.Second) }
	for i := range 4 {
		p := filepath.Join(dir, "sql", fmt.Sprintf("dump-%d.sql", i))
		if err := writeFile(p, part, mtime(), func(w *bufio.Writer, n int64) error {
			return sqlDump(w, n, rand.New(rand.NewPCG(seed, 100+uint64(i))), i)
		}); err != nil {
			return st, err
		}
		st.sqlFiles++
		st.sqlBytes += part
	}
	for i := range 4 {
		p := filepath.Join(dir, "blobs", fmt.Sprintf("blob-%d.bin", i))
		if err := writeFile(p, part, mtime(), func(w *bufio.Writer, n int64) error {
			return randomBytes(w, n, chachaSeed(seed, 200+uint64(i)))
		}); err != nil {
			return st, err
		}
		st.blobFiles++
		st.blobBytes += part
	}
	left := total - 8*part
	rng := rand.New(rand.NewPCG(seed, 300))
	for i := 0; left > 0; i++ {
		n := min(int64(1<<10+rng.IntN(63<<10+1)), left)
		left -= n
		kind := rng.IntN(len(kindExt))
		rel := smallPath(rng, i) + kindExt[kind]
		fseed := rng.Uint64()
		if err := writeFile(filepath.Join(dir, rel), n, mtime(), func(w *bufio.Writer, n int64) error {
			return smallContent(w, n, kind, fseed, rel)
		}); err != nil {
			return st, err
		}
		st.smallFiles++
		st.smallBytes += n
	}
	// Fixed directory times, children before parents.
	var dirs []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return err
	}); err != nil {
		return st, err
	}
	st.dirs = len(dirs)
	for _, d := range slices.Backward(dirs) {
		if err := os.Chtimes(d, baseTime, baseTime); err != nil {
			return st, err
		}
	}
	return st, nil
}

// smallPath names the i-th small file: small/dXX/sYY/fNNNNN, to which the
// extension of its kind is added.
func smallPath(rng *rand.Rand, i int) string {
	return filepath.Join("small", fmt.Sprintf("d%02d", rng.IntN(10)), fmt.Sprintf("s%02d", rng.IntN(10)),
		fmt.Sprintf("f%05d", i))
}

var kindExt = [8]string{".go", ".go", ".json", ".csv", ".log", ".md", ".jpg", ".png"}

// writeFile creates p (and its directory) with exactly n bytes from gen, and
// sets its modification time.
func writeFile(p string, n int64, mtime time.Time, gen func(w *bufio.Writer, n int64) error) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	cw := &capWriter{w: f, left: n}
	// No larger than the file, so that the generators (which write until
	// the file is full) stop soon after n bytes.
	w := bufio.NewWriterSize(cw, int(min(n, 1<<20)))
	err = gen(w, n)
	if errors.Is(err, errFull) {
		err = nil
	}
	if err == nil {
		err = w.Flush()
		if errors.Is(err, errFull) {
			err = nil
		}
	}
	if err == nil && cw.left != 0 {
		err = fmt.Errorf("%s: generator stopped %d bytes short", p, cw.left)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(p, mtime, mtime)
	}
	return err
}

var errFull = errors.New("file full")

// capWriter writes at most left bytes to w, then fails with errFull, which
// stops the generators.
type capWriter struct {
	w    io.Writer
	left int64
}

func (c *capWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > c.left {
		n, err := c.w.Write(b[:c.left])
		c.left -= int64(n)
		if err == nil {
			err = errFull
		}
		return n, err
	}
	n, err := c.w.Write(b)
	c.left -= int64(n)
	return n, err
}

func chachaSeed(seed, stream uint64) [32]byte {
	var s [32]byte
	r := rand.New(rand.NewPCG(seed, stream))
	for i := 0; i < 32; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			s[i+j] = byte(v >> (8 * j))
		}
	}
	return s
}

func randomBytes(w *bufio.Writer, n int64, seed [32]byte) error {
	c := rand.NewChaCha8(seed)
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		b := buf[:min(int64(len(buf)), n)]
		c.Read(b)
		if _, err := w.Write(b); err != nil {
			return err
		}
		n -= int64(len(b))
	}
	return nil
}

// ---- SQL dumps ----

var (
	firstNames = strings.Fields(`James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William
		Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty
		Anthony Margaret Mark Sandra Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua Michelle Kenneth
		Carol Kevin Amanda Brian Dorothy George Melissa Timothy Deborah Ronald Stephanie Edward Rebecca Jason Sharon
		Jeffrey Laura Ryan Cynthia Jacob Kathleen Gary Amy Nicholas Angela Eric Shirley Jonathan Anna Stephen Brenda
		Larry Pamela Justin Emma Scott Nicole Brandon Helen Benjamin Samantha Samuel Katherine Gregory Christine
		Alexander Debra Frank Rachel Patrick Carolyn Raymond Janet Jack Catherine Dennis Maria Jerry Heather Tyler
		Diane Aaron Ruth Jose Julie Adam Olivia Nathan Joyce Henry Virginia Douglas Victoria Zachary Kelly Peter
		Lauren Kyle Christina Ethan Joan Walter Evelyn Noah Judith Jeremy Megan Christian Andrea Keith Cheryl Roger
		Hannah Terry Jacqueline Gerald Martha Harold Gloria Sean Teresa Austin Ann Carl Sara Arthur Madison Lawrence
		Frances Dylan Kathryn Jesse Janice Jordan Jean Bryan Abigail Billy Alice Joe Julia Bruce Judy Gabriel Sophia
		Logan Grace Albert Denise Willie Amber Alan Doris Juan Marilyn Wayne Danielle Elijah Beverly Randy Isabella
		Roy Theresa Vincent Diana Ralph Natalie Eugene Brittany Russell Charlotte Bobby Marie Mason Kayla Philip Alexis
		Louis Lori Amélie Léa Chloé Manon Camille Inès Jade Louise Zoé Lucas Hugo Théo Nathan Mathis Enzo Raphaël
		Gabriel Jules Arthur Lukas Leon Finn Jonas Elias Noah Luis Paul Ben Mia Lena Hanna Lea Sofia Emilia Anna
		Lina Marie Giulia Sofia Aurora Alice Ginevra Emma Giorgia Beatrice Leonardo Francesco Alessandro Lorenzo
		Mattia Andrea Gabriele Tommaso Riccardo Edoardo Lucía Martina María Paula Valeria Daniela Hugo Martín Pablo
		Mateo Álvaro Adrián David Diego Javier Sergio Yuki Haruto Sota Yui Aoi Hina Wei Fang Jing Min Hao Ravi Priya
		Arjun Ananya Omar Fatima Youssef Amina Mohamed Sara Ahmed Layla Olga Ivan Dmitri Anastasia Sven Ingrid Lars
		Astrid Piotr Katarzyna Tomasz Agnieszka Jan Eva Petr Jana Kofi Ama Chinedu Ngozi Thabo Lerato Mateus Beatriz`)
	lastNames = strings.Fields(`Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez
		Hernandez Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
		Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green
		Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz
		Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey
		Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz
		Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell
		Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson
		Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran
		Medina Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington
		Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon
		Mendez Silva Shaw Snyder Mason Dixon Muñoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone
		Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner
		Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce Hansen Peters Santos Hart Bradley Knight Elliott
		Cunningham Duncan Armstrong Hudson Carroll Lane Riley Andrews Alvarado Ray Delgado Berry Perkins Hoffman
		Johnston Matthews Peña Richards Willis Carpenter Lawrence Sandoval Dubois Lefebvre Moreau Laurent Simon
		Michel Leroy Roux David Bertrand Morel Fournier Girard Bonnet Dupont Lambert Fontaine Rousseau Vincent
		Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer Richter Klein
		Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange Rossi Russo Ferrari Esposito
		Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti Costa Giordano Mancini Rizzo Lombardi Moretti
		Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Wang Li Zhang Liu Chen Yang Huang
		Zhao Wu Zhou Sharma Singh Kumar Gupta Ivanov Smirnov Kuznetsov Popov Nowak Kowalski Wiśniewski Novák
		Svoboda Dvořák Andersson Johansson Karlsson Nilsson Eriksson Larsson Hansen Jensen Nielsen Okafor Mensah`)
	domains = strings.Fields(`gmail.com yahoo.com outlook.com hotmail.com icloud.com proton.me gmx.de web.de
		orange.fr free.fr laposte.net libero.it yandex.ru mail.ru qq.com 163.com example.com example.org
		acme-corp.com globex.io initech.net umbrella.co hooli.xyz stark-industries.com wayne.enterprises`)
	cities = strings.Fields(`London Paris Berlin Madrid Rome Vienna Amsterdam Brussels Lisbon Dublin Prague
		Warsaw Budapest Stockholm Oslo Copenhagen Helsinki Athens Zurich Geneva Munich Hamburg Frankfurt Cologne
		Lyon Marseille Toulouse Nice Nantes Strasbourg Bordeaux Lille Milan Naples Turin Barcelona Valencia Seville
		Porto Krakow Rotterdam Antwerp Gothenburg Edinburgh Manchester Birmingham Glasgow NewYork Boston Chicago
		Seattle Austin Denver Toronto Montreal Vancouver Tokyo Osaka Seoul Singapore Sydney Melbourne Auckland
		Mumbai Bangalore Delhi Dubai Cairo Lagos Nairobi SaoPaulo BuenosAires Mexico Bogota Lima Santiago`)
	countries = strings.Fields(`GB FR DE ES IT AT NL BE PT IE CZ PL HU SE NO DK FI GR CH US CA JP KR SG AU NZ IN
		AE EG NG KE BR AR MX CO PE CL`)
	currencies = strings.Fields(`EUR EUR EUR USD USD GBP CHF SEK JPY CAD`)
	statuses   = strings.Fields(`active active active active pending suspended closed`)
	ordStatus  = strings.Fields(`paid paid paid shipped shipped delivered delivered delivered refunded cancelled pending`)
	evKinds    = strings.Fields(`page_view page_view page_view click click search add_to_cart checkout login
		logout signup password_reset api_call api_call export`)
	pages = strings.Fields(`/ /products /products/%d /cart /checkout /account /account/orders /search /help
		/blog/%d /api/v2/items/%d /api/v2/orders/%d /settings /login /signup`)
	agents = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
		"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
		"curl/8.5.0", "python-requests/2.31.0", "Go-http-client/2.0",
	}
	words = strings.Fields(`the a customer order please deliver before after monday tuesday friday weekend
		gift wrap fragile leave at door call on arrival back entrance second floor invoice company vat number
		express standard shipping return exchange size color blue red black white green large small medium
		urgent thanks again discount code promo summer winter sale bundle replacement warranty damaged box
		missing item partial refund requested confirmed by phone email support ticket escalated resolved
		address changed new billing contact reception office hours closed lunch between and or not with for`)
	products = strings.Fields(`widget gadget sprocket gizmo doohickey thingamajig bracket hinge bolt washer
		cable adapter charger case stand lamp chair desk mug bottle notebook pen backpack jacket shoe sock
		shirt hat glove scarf blanket pillow towel speaker headphone keyboard mouse monitor router drive`)
)

func pick(r *rand.Rand, s []string) string { return s[r.IntN(len(s))] }

// sqlWriter appends SQL text to a line buffer and flushes it line by line.
type sqlWriter struct {
	w   *bufio.Writer
	r   *rand.Rand
	b   []byte
	ts  int64 // running timestamp, Unix seconds
	ids [4]int64
}

func (s *sqlWriter) flush() error {
	_, err := s.w.Write(s.b)
	s.b = s.b[:0]
	return err
}

func (s *sqlWriter) str(v string) { s.b = append(s.b, v...) }

func (s *sqlWriter) quoted(v string) {
	s.b = append(s.b, '\'')
	s.b = append(s.b, v...)
	s.b = append(s.b, '\'')
}

func (s *sqlWriter) int(v int64) { s.b = strconv.AppendInt(s.b, v, 10) }

func (s *sqlWriter) money(cents int64) {
	s.b = strconv.AppendInt(s.b, cents/100, 10)
	s.b = append(s.b, '.', byte('0'+cents%100/10), byte('0'+cents%10))
}

func (s *sqlWriter) time() {
	s.ts += 1 + s.r.Int64N(90)
	s.b = append(s.b, '\'')
	s.b = time.Unix(s.ts, 0).UTC().AppendFormat(s.b, "2006-01-02 15:04:05")
	s.b = append(s.b, '\'')
}

func (s *sqlWriter) nextID(t int) int64 {
	s.ids[t] += 1 + s.r.Int64N(3)
	return s.ids[t]
}

func (s *sqlWriter) email(first, last string) {
	s.b = append(s.b, '\'')
	s.b = append(s.b, strings.ToLower(asciiOnly(first))...)
	switch s.r.IntN(3) {
	case 0:
		s.b = append(s.b, '.')
	case 1:
		s.b = append(s.b, '_')
	}
	s.b = append(s.b, strings.ToLower(asciiOnly(last))...)
	if s.r.IntN(2) == 0 {
		s.b = strconv.AppendInt(s.b, int64(s.r.IntN(100)), 10)
	}
	s.b = append(s.b, '@')
	s.b = append(s.b, pick(s.r, domains)...)
	s.b = append(s.b, '\'')
}

func asciiOnly(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 128 {
			return r
		}
		return 'x'
	}, v)
}

func (s *sqlWriter) words(n int) {
	for i := range n {
		if i > 0 {
			s.b = append(s.b, ' ')
		}
		s.b = append(s.b, pick(s.r, words)...)
	}
}

var tables = [4]struct{ name, create, insert string }{
	{"customers", "CREATE TABLE `customers` (\n  `id` bigint NOT NULL,\n  `first_name` varchar(64) NOT NULL,\n  `last_name` varchar(64) NOT NULL,\n  `email` varchar(255) NOT NULL,\n  `city` varchar(64) DEFAULT NULL,\n  `country` char(2) DEFAULT NULL,\n  `created_at` datetime NOT NULL,\n  `balance` decimal(12,2) NOT NULL DEFAULT '0.00',\n  `status` varchar(16) NOT NULL,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `email` (`email`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n",
		"INSERT INTO `customers` VALUES ("},
	{"orders", "CREATE TABLE `orders` (\n  `id` bigint NOT NULL,\n  `customer_id` bigint NOT NULL,\n  `placed_at` datetime NOT NULL,\n  `amount` decimal(12,2) NOT NULL,\n  `currency` char(3) NOT NULL,\n  `status` varchar(16) NOT NULL,\n  `items` int NOT NULL,\n  `note` text,\n  `tracking` varchar(24) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `customer_id` (`customer_id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n",
		"INSERT INTO `orders` VALUES ("},
	{"events", "CREATE TABLE `events` (\n  `id` bigint NOT NULL,\n  `account_id` bigint NOT NULL,\n  `kind` varchar(32) NOT NULL,\n  `created_at` datetime NOT NULL,\n  `ip` varchar(45) NOT NULL,\n  `user_agent` varchar(255) NOT NULL,\n  `payload` json DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n",
		"INSERT INTO `events` VALUES ("},
	{"invoice_lines", "CREATE TABLE `invoice_lines` (\n  `id` bigint NOT NULL,\n  `order_id` bigint NOT NULL,\n  `product` varchar(64) NOT NULL,\n  `sku` varchar(16) NOT NULL,\n  `quantity` int NOT NULL,\n  `unit_price` decimal(12,2) NOT NULL,\n  `vat_rate` decimal(4,2) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n",
		"INSERT INTO `invoice_lines` VALUES ("},
}

// sqlDump writes SQL text until the writer is full (n bytes): sections of
// 1 to 8 MiB, one table each, in turn.
func sqlDump(w *bufio.Writer, n int64, r *rand.Rand, db int) error {
	s := &sqlWriter{w: w, r: r, ts: baseTime.Unix() - 3*365*86400 + int64(db)*86400*30}
	for t := range s.ids {
		s.ids[t] = int64(db)*10_000_000 + r.Int64N(1000)
	}
	s.str(fmt.Sprintf("-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)\n--\n-- Host: db%d.internal    Database: shop_%d\n-- ------------------------------------------------------\n-- Server version\t8.0.36\n\n/*!40101 SET NAMES utf8mb4 */;\n/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;\n\n", db, db))
	for sec := 0; ; sec++ {
		t := (sec + db) % len(tables)
		tb := tables[t]
		s.str("--\n-- Table structure for table `" + tb.name + "`\n--\n\nDROP TABLE IF EXISTS `" + tb.name + "`;\n")
		s.str(tb.create)
		s.str("\n--\n-- Dumping data for table `" + tb.name + "`\n--\n\nLOCK TABLES `" + tb.name + "` WRITE;\n")
		if err := s.flush(); err != nil {
			return err
		}
		var written int64
		budget := int64(1+r.IntN(8)) * MiB
		for written < budget {
			s.str(tb.insert)
			s.row(t)
			s.str(");\n")
			written += int64(len(s.b))
			if err := s.flush(); err != nil {
				return err
			}
		}
		s.str("UNLOCK TABLES;\n\n")
	}
}

func (s *sqlWriter) row(t int) {
	r := s.r
	s.int(s.nextID(t))
	s.str(", ")
	switch t {
	case 0: // customers
		first, last := pick(r, firstNames), pick(r, lastNames)
		s.quoted(first)
		s.str(", ")
		s.quoted(last)
		s.str(", ")
		s.email(first, last)
		s.str(", ")
		s.quoted(pick(r, cities))
		s.str(", ")
		s.quoted(pick(r, countries))
		s.str(", ")
		s.time()
		s.str(", ")
		if r.IntN(4) == 0 {
			s.str("0.00")
		} else {
			s.money(r.Int64N(500000))
		}
		s.str(", ")
		s.quoted(pick(r, statuses))
	case 1: // orders
		s.int(s.ids[0] - r.Int64N(5000))
		s.str(", ")
		s.time()
		s.str(", ")
		s.money(100 + r.Int64N(50000))
		s.str(", ")
		s.quoted(pick(r, currencies))
		s.str(", ")
		s.quoted(pick(r, ordStatus))
		s.str(", ")
		s.int(1 + r.Int64N(6))
		s.str(", ")
		if r.IntN(3) == 0 {
			s.str("'")
			s.words(3 + r.IntN(12))
			s.str("'")
		} else {
			s.str("NULL")
		}
		s.str(", ")
		if r.IntN(4) == 0 {
			s.str("NULL")
		} else {
			s.b = fmt.Appendf(s.b, "'%s%010d'", pick(r, []string{"1Z", "JD", "LX", "CP"}), r.Int64N(1e10))
		}
	case 2: // events
		s.int(s.ids[0] - r.Int64N(5000))
		s.str(", ")
		s.quoted(pick(r, evKinds))
		s.str(", ")
		s.time()
		s.str(", '")
		if r.IntN(5) == 0 {
			s.b = fmt.Appendf(s.b, "2001:db8:%x:%x::%x", r.IntN(65536), r.IntN(65536), r.IntN(65536))
		} else {
			s.b = fmt.Appendf(s.b, "%d.%d.%d.%d", 10+r.IntN(200), r.IntN(256), r.IntN(256), 1+r.IntN(254))
		}
		s.str("', ")
		s.quoted(pick(r, agents))
		s.str(", '{\"page\":\"")
		page := pick(r, pages)
		if strings.Contains(page, "%d") {
			s.b = fmt.Appendf(s.b, page, r.IntN(20000))
		} else {
			s.str(page)
		}
		s.str("\",\"ms\":")
		s.int(5 + r.Int64N(900))
		s.b = fmt.Appendf(s.b, ",\"session\":\"%016x\"", r.Uint64())
		s.str(",\"ref\":\"")
		s.str(pick(r, []string{"direct", "search", "email", "ads", "social"}))
		s.str("\"}'")
	case 3: // invoice lines
		s.int(s.ids[1] - r.Int64N(50))
		s.str(", ")
		s.quoted(pick(r, products))
		s.str(", '")
		s.b = fmt.Appendf(s.b, "SKU-%06d", r.IntN(40000))
		s.str("', ")
		s.int(1 + r.Int64N(4))
		s.str(", ")
		s.money(99 + r.Int64N(20000))
		s.str(", ")
		s.str(pick(r, []string{"20.00", "20.00", "19.00", "21.00", "5.50", "10.00", "0.00"}))
	}
}

// ---- small files ----

var codeWords = strings.Fields(`func return if err != nil { } ctx x := for range i + 1 ( ) var type struct
	string int64 []byte len append make map chan go defer select case default switch break continue
	fmt.Errorf errors.Is context.Context io.Reader os.Open strings.Split strconv.Itoa time.Now sync.Mutex`)

// smallContent writes n bytes of the given kind (an index into kindExt).
func smallContent(w *bufio.Writer, n int64, kind int, seed uint64, rel string) error {
	r := rand.New(rand.NewPCG(seed, 400))
	var line []byte
	emit := func() error {
		_, err := w.Write(line)
		line = line[:0]
		return err
	}
	switch kindExt[kind] {
	case ".jpg", ".png":
		return randomBytes(w, n, chachaSeed(seed, 401))
	case ".go":
		line = fmt.Appendf(line, "// Code for %s.\npackage %s\n\n", rel, pick(r, []string{"store", "api", "model", "util", "auth"}))
		for {
			line = append(line, strings.Repeat("\t", r.IntN(4))...)
			for k := 3 + r.IntN(10); k > 0; k-- {
				line = append(line, pick(r, codeWords)...)
				line = append(line, ' ')
			}
			line = append(line, '\n')
			if err := emit(); err != nil {
				return err
			}
		}
	case ".json":
		line = append(line, "[\n"...)
		for id := r.IntN(1000); ; id++ {
			first, last := pick(r, firstNames), pick(r, lastNames)
			line = fmt.Appendf(line, "  {\"id\": %d, \"name\": \"%s %s\", \"city\": \"%s\", \"score\": %d.%02d, \"tags\": [\"%s\", \"%s\"]},\n",
				id, first, last, pick(r, cities), r.IntN(100), r.IntN(100), pick(r, words), pick(r, products))
			if err := emit(); err != nil {
				return err
			}
		}
	case ".csv":
		line = append(line, "date,sku,product,quantity,unit_price,country\n"...)
		ts := baseTime.Unix() - r.Int64N(365*86400)
		for {
			ts += r.Int64N(3600)
			line = fmt.Appendf(line, "%s,SKU-%06d,%s,%d,%d.%02d,%s\n", time.Unix(ts, 0).UTC().Format("2006-01-02"),
				r.IntN(40000), pick(r, products), 1+r.IntN(9), r.IntN(300), r.IntN(100), pick(r, countries))
			if err := emit(); err != nil {
				return err
			}
		}
	case ".log":
		ts := baseTime.Unix() - r.Int64N(30*86400)
		for {
			ts += r.Int64N(20)
			line = fmt.Appendf(line, "%s %s [%s] %s %d.%d.%d.%d \"GET /api/v2/items/%d\" %s %dms\n",
				time.Unix(ts, 0).UTC().Format(time.RFC3339), pick(r, []string{"INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG"}),
				pick(r, []string{"http", "worker", "db", "cache"}), pick(r, evKinds),
				10+r.IntN(200), r.IntN(256), r.IntN(256), 1+r.IntN(254), r.IntN(20000),
				pick(r, []string{"200", "200", "200", "201", "304", "404", "500"}), r.IntN(2000))
			if err := emit(); err != nil {
				return err
			}
		}
	default: // .md
		line = fmt.Appendf(line, "# Notes on %s\n\n", rel)
		for {
			if r.IntN(8) == 0 {
				line = append(line, "\n## "...)
			}
			s := &sqlWriter{r: r, b: line}
			s.words(6 + r.IntN(14))
			line = append(s.b, ".\n"...)
			if err := emit(); err != nil {
				return err
			}
		}
	}
}

// ---- edits ----

type editStats struct {
	largeEdits, largeFiles                   int
	overwrites, inserts                      int
	smallModified, smallAdded, smallRemoved  int
	changedInPlace, addedBytes, removedBytes int64
}

func (s editStats) String() string {
	return fmt.Sprintf("%d edits of %d bytes in %d large files (%d overwrites, %d insertions); small files: %d modified (%d bytes overwritten each), %d added (%.2f MiB), %d removed (%.2f MiB); %d bytes changed or inserted in place",
		s.largeEdits, editSize, s.largeFiles, s.overwrites, s.inserts, s.smallModified, editSize,
		s.smallAdded, mib(s.addedBytes), s.smallRemoved, mib(s.removedBytes), s.changedInPlace)
}

type fileInfo struct {
	rel  string
	size int64
}

func applyEdits(dir string, seed uint64) (editStats, error) {
	var st editStats
	var large, small []fileInfo
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		f := fileInfo{filepath.ToSlash(rel), fi.Size()}
		if strings.HasPrefix(d.Name(), "new-") {
			return fmt.Errorf("%s has already been edited (%s exists): apply -edit once, to a fresh copy of the mix", dir, f.rel)
		}
		if strings.HasPrefix(f.rel, "small/") {
			small = append(small, f)
		} else {
			large = append(large, f)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	if len(large) == 0 || len(small) == 0 {
		return st, fmt.Errorf("%s does not look like a mix (no large or no small files)", dir)
	}
	slices.SortFunc(large, func(a, b fileInfo) int { return strings.Compare(a.rel, b.rel) })
	slices.SortFunc(small, func(a, b fileInfo) int { return strings.Compare(a.rel, b.rel) })
	r := rand.New(rand.NewPCG(seed, 500))

	// Large files: one edit per stratum of the concatenated space.
	var total int64
	for _, f := range large {
		total += f.size
	}
	n := max(4, int(math.Round(0.02*float64(total)/MiB)))
	type edit struct {
		off    int64 // in the file
		insert bool
	}
	perFile := map[int][]edit{}
	stratum := total / int64(n)
	for i := range n {
		g := int64(i)*stratum + r.Int64N(stratum-editSize)
		fi := 0
		for g >= large[fi].size {
			g -= large[fi].size
			fi++
		}
		off := min(g, large[fi].size-editSize)
		perFile[fi] = append(perFile[fi], edit{off, i%2 == 1})
		if i%2 == 1 {
			st.inserts++
		} else {
			st.overwrites++
		}
	}
	st.largeEdits = n
	for _, fi := range slices.Sorted(maps.Keys(perFile)) {
		f := large[fi]
		p := filepath.Join(dir, filepath.FromSlash(f.rel))
		data, err := os.ReadFile(p)
		if err != nil {
			return st, err
		}
		sql := strings.HasSuffix(f.rel, ".sql")
		edits := perFile[fi]
		// From the end, so that earlier offsets stay valid.
		slices.SortFunc(edits, func(a, b edit) int { return int(b.off - a.off) })
		for _, e := range edits {
			patch := editBytes(r, sql)
			if e.insert {
				data = slices.Insert(data, int(e.off), patch...)
			} else {
				copy(data[e.off:], patch)
			}
			st.changedInPlace += editSize
		}
		if err := rewrite(p, data); err != nil {
			return st, err
		}
		st.largeFiles++
	}

	// Small files: modify 1%, remove 0.5%, add as many.
	nMod := max(1, int(math.Round(0.01*float64(len(small)))))
	nRm := max(1, int(math.Round(0.005*float64(len(small)))))
	perm := r.Perm(len(small))
	touchedDirs := map[string]bool{}
	for _, i := range perm[:nMod] {
		f := small[i]
		p := filepath.Join(dir, filepath.FromSlash(f.rel))
		data, err := os.ReadFile(p)
		if err != nil {
			return st, err
		}
		patch := editBytes(r, !strings.HasSuffix(f.rel, ".jpg") && !strings.HasSuffix(f.rel, ".png"))
		if len(data) <= editSize {
			data = append(data, patch...)
		} else {
			copy(data[r.IntN(len(data)-editSize):], patch)
		}
		if err := rewrite(p, data); err != nil {
			return st, err
		}
		st.changedInPlace += editSize
		st.smallModified++
	}
	for _, i := range perm[nMod : nMod+nRm] {
		f := small[i]
		if err := os.Remove(filepath.Join(dir, filepath.FromSlash(f.rel))); err != nil {
			return st, err
		}
		touchedDirs[filepath.Dir(f.rel)] = true
		st.smallRemoved++
		st.removedBytes += f.size
	}
	for i := range nRm {
		// In the directory of a random existing file.
		d := filepath.Dir(small[r.IntN(len(small))].rel)
		rel := filepath.Join(d, fmt.Sprintf("new-%04d.md", i))
		size := int64(1<<10 + r.IntN(63<<10+1))
		fseed := r.Uint64()
		if err := writeFile(filepath.Join(dir, rel), size, editTime, func(w *bufio.Writer, n int64) error {
			return smallContent(w, n, 5, fseed, rel)
		}); err != nil {
			return st, err
		}
		touchedDirs[d] = true
		st.smallAdded++
		st.addedBytes += size
	}
	for _, d := range slices.Sorted(maps.Keys(touchedDirs)) {
		if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(d)), editTime, editTime); err != nil {
			return st, err
		}
	}
	return st, nil
}

// editBytes returns the 100 bytes of one edit: SQL-looking text, or random
// bytes.
func editBytes(r *rand.Rand, text bool) []byte {
	b := make([]byte, 0, editSize+64)
	if !text {
		for len(b) < editSize {
			b = append(b, byte(r.Uint32()))
		}
		return b
	}
	b = fmt.Appendf(b, "UPDATE `orders` SET `status` = 'refunded', `amount` = %d.%02d WHERE `id` = %d; -- edit %d",
		r.IntN(5000), r.IntN(100), r.IntN(1e8), r.IntN(1e6))
	for len(b) < editSize-1 {
		b = append(b, ' ')
	}
	return append(b[:editSize-1], '\n')
}

// rewrite replaces the contents of the existing file p in place (same
// inode), and sets its modification time to editTime.
func rewrite(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(p, editTime, editTime)
	}
	return err
}
