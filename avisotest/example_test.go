package avisotest_test

import (
	"context"
	"fmt"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// A watch that replays from sequence 2, on a server told to close every
// stream after two notifications.
func Example() {
	s, err := avisotest.New(avisotest.WithBasePath("/aviso"))
	if err != nil {
		panic(err)
	}
	defer s.Close()
	for _, class := range []string{"od", "rd", "od", "od"} {
		s.Publish("mars", map[string]string{"class": class}, map[string]string{"note": "ready"})
	}
	s.FaultEvery(avisotest.CloseWith{Reason: "max_duration_reached", After: 2})

	c := &aviso.Client{BaseURL: s.URL}
	from := uint64(2)
	st, err := c.Connect(context.Background(), aviso.Watch, aviso.Request{
		EventType: "mars", Identifier: []byte(`{"class":"od"}`), FromID: &from})
	if err != nil {
		panic(err)
	}
	defer st.Close()
	fmt.Println("opening:", st.Opening.Kind)
	for {
		f, err := st.Next()
		if err != nil {
			fmt.Println("end:", err)
			break
		}
		switch f.Kind {
		case aviso.KindNotification:
			fmt.Println(f.Kind, f.Notification.ID, string(f.Notification.Data))
		case aviso.KindClosing:
			fmt.Println(f.Kind, f.Reason)
		default:
			fmt.Println(f.Kind)
		}
	}
	// Output:
	// opening: replay_started
	// heartbeat
	// notification mars@3 {"identifier":{"class":"od"},"payload":{"note":"ready"}}
	// notification mars@4 {"identifier":{"class":"od"},"payload":{"note":"ready"}}
	// closing max_duration_reached
	// end: EOF
}
