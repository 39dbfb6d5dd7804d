module github.com/pgoutbox/pgoutbox

go 1.26
