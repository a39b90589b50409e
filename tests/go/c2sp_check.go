// c2sp_check: an independent check of govledger's checkpoints and proofs with
// Go's golang.org/x/mod/sumdb/note and sumdb/tlog (the implementations the
// C2SP signed-note and tlog formats come from), built from Debian's
// golang-golang-x-mod-dev in GOPATH mode. Used by tests/c2sp.rs.
//
//	c2sp_check note VKEY NOTE_FILE
//	    verifies the signed note with the verifier key; prints its text.
//	c2sp_check inclusion SIZE ROOT_B64 INDEX RECORD_FILE PROOF_HEX[,PROOF_HEX...]
//	    checks that the record (its leaf hash computed here) is at INDEX in the tree.
//	c2sp_check consistency SIZE1 ROOT1_B64 SIZE2 ROOT2_B64 PROOF_HEX[,...]
//	    checks that the tree of SIZE2 extends the tree of SIZE1.
//	c2sp_check bundle VKEY[,VKEY...] BUNDLE_JSON
//	    checks a govledger evidence bundle's transparency-log parts: every
//	    checkpoint's signed note under one of the VKEYs (the published key
//	    set, across key rotations), each checkpoint's tree extending
//	    the previous one (the bundle's consistency proofs), and every event's
//	    c2sp.org/tlog-proof@v1 (its record = 8-byte big-endian sequence, then
//	    the stored bytes) under a note signed by VKEY. The rest of a bundle
//	    (manifest, state, seals) is govledger's own and not checked here.
//	c2sp_check tiles URL TOKEN VKEY INDEX RECORD_FILE
//	    a tlog client over the ledger's HTTP tlog-tiles API: fetches
//	    URL/checkpoint, verifies it under VKEY, then reads the tree's hashes
//	    through tlog.TileHashReader (which checks every tile it fetches
//	    against the signed root) to prove the record at INDEX included.
//
// Exit 0 when the check holds, 1 with the reason on stderr when it does not.
package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func num(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		fail("not a number: %q", s)
	}
	return n
}

func rootHash(b64 string) tlog.Hash {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != tlog.HashSize {
		fail("not a base64 hash: %q", b64)
	}
	var h tlog.Hash
	copy(h[:], raw)
	return h
}

func proof(csv string) []tlog.Hash {
	var out []tlog.Hash
	if csv == "" || csv == "-" {
		return out
	}
	for _, x := range strings.Split(csv, ",") {
		raw, err := hex.DecodeString(x)
		if err != nil || len(raw) != tlog.HashSize {
			fail("not a hex hash: %q", x)
		}
		var h tlog.Hash
		copy(h[:], raw)
		out = append(out, h)
	}
	return out
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: c2sp_check note|inclusion|consistency ...")
	}
	switch os.Args[1] {
	case "note":
		v, err := note.NewVerifier(os.Args[2])
		if err != nil {
			fail("verifier key: %v", err)
		}
		msg, err := os.ReadFile(os.Args[3])
		if err != nil {
			fail("%v", err)
		}
		n, err := note.Open(msg, note.VerifierList(v))
		if err != nil {
			fail("note: %v", err)
		}
		fmt.Print(n.Text)
	case "inclusion":
		size, root, index := num(os.Args[2]), rootHash(os.Args[3]), num(os.Args[4])
		record, err := os.ReadFile(os.Args[5])
		if err != nil {
			fail("%v", err)
		}
		p := tlog.RecordProof(proof(os.Args[6]))
		if err := tlog.CheckRecord(p, size, root, index, tlog.RecordHash(record)); err != nil {
			fail("inclusion: %v", err)
		}
		fmt.Println("inclusion ok")
	case "consistency":
		size1, root1 := num(os.Args[2]), rootHash(os.Args[3])
		size2, root2 := num(os.Args[4]), rootHash(os.Args[5])
		p := tlog.TreeProof(proof(os.Args[6]))
		if err := tlog.CheckTree(p, size2, root2, size1, root1); err != nil {
			fail("consistency: %v", err)
		}
		fmt.Println("consistency ok")
	case "bundle":
		checkBundle(os.Args[2], os.Args[3])
	case "tiles":
		checkTiles(os.Args[2], os.Args[3], os.Args[4], num(os.Args[5]), os.Args[6])
	default:
		fail("unknown check %q", os.Args[1])
	}
}

// tree is a checkpoint body: origin, size, root.
type tree struct {
	origin string
	size   int64
	root   tlog.Hash
}

// openCheckpoint verifies a signed checkpoint note under one of the
// comma-separated verifier keys vkeys and parses it.
func openCheckpoint(vkeys string, text string) tree {
	var vs []note.Verifier
	for _, vkey := range strings.Split(vkeys, ",") {
		v, err := note.NewVerifier(vkey)
		if err != nil {
			fail("verifier key: %v", err)
		}
		vs = append(vs, v)
	}
	n, err := note.Open([]byte(text), note.VerifierList(vs...))
	if err != nil {
		fail("checkpoint note: %v", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		fail("checkpoint note: not origin, size and root lines")
	}
	return tree{lines[0], num(lines[1]), rootHash(lines[2])}
}

// protoField returns the last length-delimited field `field` of a protobuf
// message (proto3 wire format), or "".
func protoField(msg []byte, field uint64) string {
	out := ""
	for len(msg) > 0 {
		key, n := binary.Uvarint(msg)
		if n <= 0 {
			fail("checkpoint: not protobuf")
		}
		msg = msg[n:]
		switch key & 7 {
		case 0:
			_, n = binary.Uvarint(msg)
			if n <= 0 {
				fail("checkpoint: not protobuf")
			}
			msg = msg[n:]
		case 1:
			msg = msg[8:]
		case 5:
			msg = msg[4:]
		case 2:
			l, n := binary.Uvarint(msg)
			if n <= 0 || uint64(len(msg)-n) < l {
				fail("checkpoint: not protobuf")
			}
			if key>>3 == field {
				out = string(msg[n : n+int(l)])
			}
			msg = msg[n+int(l):]
		default:
			fail("checkpoint: wire type %d", key&7)
		}
	}
	return out
}

// parseProof reads a c2sp.org/tlog-proof@v1.
func parseProof(text string) (int64, tlog.RecordProof, string) {
	head, checkpoint, ok := strings.Cut(text, "\n\n")
	if !ok {
		fail("tlog-proof: no blank line")
	}
	lines := strings.Split(head, "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" {
		fail("tlog-proof: header %q", lines[0])
	}
	lines = lines[1:]
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		fail("tlog-proof: no index line")
	}
	index := num(strings.TrimPrefix(lines[0], "index "))
	var p tlog.RecordProof
	for _, l := range lines[1:] {
		p = append(p, rootHash(l))
	}
	return index, p, checkpoint
}

func checkBundle(vkey, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	var b struct {
		Checkpoints []string   `json:"checkpoints"`
		Consistency [][]string `json:"consistency"`
		Events      []struct {
			Seq       int64  `json:"seq"`
			Raw       string `json:"raw"`
			TlogProof string `json:"tlog_proof"`
		} `json:"events"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		fail("bundle: %v", err)
	}
	var trees []tree
	for i, h := range b.Checkpoints {
		msg, err := hex.DecodeString(h)
		if err != nil {
			fail("checkpoint %d: not hex", i)
		}
		text := protoField(msg, 10)
		if text == "" {
			fail("checkpoint %d carries no signed note", i)
		}
		trees = append(trees, openCheckpoint(vkey, text))
	}
	if len(trees) == 0 || len(b.Consistency) != len(trees)-1 {
		fail("bundle: %d checkpoints, %d consistency proofs", len(trees), len(b.Consistency))
	}
	for i := 1; i < len(trees); i++ {
		t1, t2 := trees[i-1], trees[i]
		// One key, one origin; across a rotation the default origin
		// (which names the key) changes with the key.
		if t1.origin != t2.origin && !strings.Contains(vkey, ",") {
			fail("checkpoints %d and %d: origins differ", i-1, i)
		}
		if t1.size == 0 {
			continue
		}
		if t1.size == t2.size {
			if t1.root != t2.root {
				fail("checkpoints %d and %d: same size, different roots (a fork)", i-1, i)
			}
			continue
		}
		p := tlog.TreeProof(proof(strings.Join(b.Consistency[i-1], ",")))
		if err := tlog.CheckTree(p, t2.size, t2.root, t1.size, t1.root); err != nil {
			fail("checkpoints %d (size %d) and %d (size %d): %v", i-1, t1.size, i, t2.size, err)
		}
	}
	for _, e := range b.Events {
		index, p, checkpoint := parseProof(e.TlogProof)
		t := openCheckpoint(vkey, checkpoint)
		if index != e.Seq-1 {
			fail("sequence %d: its tlog-proof is for index %d", e.Seq, index)
		}
		stored, err := hex.DecodeString(e.Raw)
		if err != nil {
			fail("sequence %d: raw is not hex", e.Seq)
		}
		record := make([]byte, 8, 8+len(stored))
		binary.BigEndian.PutUint64(record, uint64(e.Seq))
		record = append(record, stored...)
		if err := tlog.CheckRecord(p, t.size, t.root, index, tlog.RecordHash(record)); err != nil {
			fail("sequence %d: %v", e.Seq, err)
		}
	}
	fmt.Printf("bundle ok: %d checkpoint(s) signed and consistent, %d event(s) included (origin %s, size %d)\n",
		len(trees), len(b.Events), trees[len(trees)-1].origin, trees[len(trees)-1].size)
}

// httpTiles reads tiles from a tlog-tiles HTTP API (c2sp.org/tlog-tiles paths).
type httpTiles struct{ base, token string }

func (h httpTiles) Height() int { return 8 }

func (h httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	var out [][]byte
	for _, t := range tiles {
		// Go names tiles tile/<height>/<L>/<N>; tlog-tiles has no height.
		p := "tile/" + strings.TrimPrefix(t.Path(), "tile/8/")
		b, err := get(h.base+"/"+p, h.token)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func (h httpTiles) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func get(url, token string) ([]byte, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

func checkTiles(base, token, vkey string, index int64, recordFile string) {
	cp, err := get(base+"/checkpoint", token)
	if err != nil {
		fail("%v", err)
	}
	t := openCheckpoint(vkey, string(cp))
	tree := tlog.Tree{N: t.size, Hash: t.root}
	hr := tlog.TileHashReader(tree, httpTiles{base, token})
	h, err := tlog.TreeHash(tree.N, hr)
	if err != nil {
		fail("tiles: %v", err)
	}
	if h != tree.Hash {
		fail("tiles: the tree hash from the tiles is not the signed root")
	}
	p, err := tlog.ProveRecord(tree.N, index, hr)
	if err != nil {
		fail("tiles: %v", err)
	}
	record, err := os.ReadFile(recordFile)
	if err != nil {
		fail("%v", err)
	}
	if err := tlog.CheckRecord(p, tree.N, tree.Hash, index, tlog.RecordHash(record)); err != nil {
		fail("inclusion: %v", err)
	}
	fmt.Printf("tiles ok: the tree of size %d verified from the served tiles; record %d included\n", tree.N, index)
}
