// Package faultnet is a userspace TCP proxy on loopback that injects network
// faults between a client and a server: black-holing (a partition: bytes are
// held, connections stay open, clients time out) and cutting every connection.
// The tests' internal/testenv and the chaos suite both use it.
package faultnet
