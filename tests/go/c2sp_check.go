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
//
// Exit 0 when the check holds, 1 with the reason on stderr when it does not.
package main

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
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
	default:
		fail("unknown check %q", os.Args[1])
	}
}
