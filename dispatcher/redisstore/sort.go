package redisstore

import (
	"cmp"
	"slices"

	"github.com/digitalpost/postbud/dispatcher"
)

func sortDevices(ds []dispatcher.Device) {
	slices.SortFunc(ds, func(a, b dispatcher.Device) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.Token, b.Token))
	})
}
