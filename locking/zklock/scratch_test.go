package zklock

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

type lg struct{}

func (lg) Printf(f string, a ...any) { fmt.Printf("LOG "+f+" %T\n", append(a, a)...) }

func TestScratch(t *testing.T) {
	c, _, err := zk.Connect([]string{os.Getenv("ONCECRON_TEST_ZK")}, 500*time.Millisecond, zk.WithLogger(lg{}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acl := zk.WorldACL(zk.PermAll)
	c.Create("/scratch", nil, 0, acl)
	c.Create("/scratch/f", nil, 0, acl)
	c.Delete("/scratch/l", -1)
	r, err := c.Multi(&zk.CreateRequest{Path: "/scratch/l", Data: []byte("o"), Acl: acl, Flags: zk.FlagEphemeral}, &zk.SetDataRequest{Path: "/scratch/f", Version: -1})
	fmt.Printf("%v %+v %+v\n", err, r[0], r[1].Stat)
	_, st, _ := c.Get("/scratch/l")
	fmt.Printf("czxid %d eph %x sid %x\n", st.Czxid, st.EphemeralOwner, c.SessionID())
	r, err = c.Multi(&zk.CheckVersionRequest{Path: "/scratch/f", Version: -1}, &zk.CreateRequest{Path: "/scratch/l", Data: []byte("o"), Acl: acl, Flags: zk.FlagEphemeral}, &zk.SetDataRequest{Path: "/scratch/nonode", Version: -1})
	fmt.Printf("err=%v\n", err)
	for _, x := range r {
		fmt.Printf("  %+v\n", x)
	}
	r, err = c.Multi(&zk.DeleteRequest{Path: "/scratch/nope", Version: -1}, &zk.CreateRequest{Path: "/scratch/l", Data: []byte("o"), Acl: acl, Flags: zk.FlagEphemeral})
	fmt.Printf("err=%v\n", err)
	for _, x := range r {
		fmt.Printf("  %+v\n", x)
	}
}
