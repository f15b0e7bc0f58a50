// Temporary: pins the modules the packages are being written against.
package main

import (
	_ "firebase.google.com/go/v4"
	_ "firebase.google.com/go/v4/messaging"
	_ "github.com/alicebob/miniredis/v2"
	_ "github.com/go-redis/redis_rate/v10"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/hibiken/asynq"
	_ "github.com/hibiken/asynq/x/metrics"
	_ "github.com/hibiken/asynqmon"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/sideshow/apns2"
	_ "github.com/sideshow/apns2/token"
	_ "github.com/wneessen/go-mail"
	_ "google.golang.org/api/option"
	_ "gopkg.in/yaml.v3"
	_ "github.com/golang-jwt/jwt/v4"
)

func main() {}
