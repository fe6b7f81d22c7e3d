package zklock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-zookeeper/zk"

	"github.com/oncecron/oncecron/locking"
)

// ACLError reports that ZooKeeper refuses this backend access to the nodes
// oncecron keeps because the session's digest credentials do not match their
// ACL: a wrong password, no credentials where the nodes were made with some, or
// nodes made by another identity. ZooKeeper accepts any digest credentials when
// a session presents them, so this shows only when a node is used (New checks
// the namespace's root node). It wraps locking.ErrInvalid, since no retry helps,
// and zk.ErrNoAuth when ZooKeeper refused a request.
type ACLError struct {
	// Path is the node whose ACL refuses the session; with Below, some node
	// under it (ZooKeeper does not say which of a multi-request's nodes).
	Path  string
	Below bool
	// User is the session's digest user; "" without WithDigestAuth.
	User string
	// Admitted are the digest users the node's ACL lets create nodes, when
	// known (never their password hashes).
	Admitted []string
	// Err is zk.ErrNoAuth when a request was refused; nil when New found the
	// mismatch by reading the ACL.
	Err error
}

func (e *ACLError) Error() string {
	node := "node " + e.Path
	if e.Below {
		node = "a node under " + e.Path
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ZooKeeper refuses access to %s", node)
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	switch {
	case e.User == "":
		b.WriteString(": the session has no digest credentials and the node's ACL requires them; set a user name and password")
	case slices.Contains(e.Admitted, e.User):
		fmt.Fprintf(&b, ": the credentials of digest user %q do not match its ACL, which admits that user with another password: wrong password", e.User)
	case len(e.Admitted) > 0:
		fmt.Fprintf(&b, ": the credentials of digest user %q do not match its ACL, which admits only %s: the nodes belong to another identity",
			e.User, strings.Join(e.Admitted, ", "))
	default:
		fmt.Fprintf(&b, ": the credentials of digest user %q do not match the ACL oncecron's nodes were made with (a wrong password, or another identity's nodes)", e.User)
	}
	return b.String()
}

// Unwrap returns locking.ErrInvalid and Err.
func (e *ACLError) Unwrap() []error {
	if e.Err == nil {
		return []error{locking.ErrInvalid}
	}
	return []error{locking.ErrInvalid, e.Err}
}

// checkRootACL fails with an *ACLError when the namespace's root node exists and
// its ACL does not let this session create nodes under it. ACL entries of
// schemes other than world and digest (ip, x509, sasl) cannot be judged here and
// pass.
func (b *Backend) checkRootACL(ctx context.Context) error {
	var acl []zk.ACL
	err := b.do(ctx, func() error {
		var err error
		acl, _, err = b.conn.GetACL(b.root)
		return err
	})
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return nil // the first replica creates it
	case errors.Is(err, zk.ErrNoAuth):
		return &ACLError{Path: b.root, User: b.user, Err: err}
	case err != nil:
		return err
	}
	var mine string
	if b.user != "" {
		mine = b.acl[0].ID // the digest id: user:base64(sha1(user:password))
	}
	var admitted []string
	for _, a := range acl {
		if a.Perms&zk.PermCreate == 0 {
			continue
		}
		switch a.Scheme {
		case "world":
			if a.ID == "anyone" {
				return nil
			}
		case "digest":
			if mine != "" && a.ID == mine {
				return nil
			}
			if user, _, ok := strings.Cut(a.ID, ":"); ok && !slices.Contains(admitted, user) {
				admitted = append(admitted, user)
			}
		default:
			return nil
		}
	}
	return &ACLError{Path: b.root, User: b.user, Admitted: admitted}
}
