"""`bgnn simulate`: a container mesh in, a learned granular-flow simulation out."""
