module ketaminefhir/bench/loadgen

// The standard library only: nothing is fetched (bench/generator.py builds it with GOPROXY=off).
go 1.21
