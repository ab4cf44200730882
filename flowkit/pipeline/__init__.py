"""The extraction run: the driver (:mod:`.extract`), the pure plan of work units (:mod:`.plan`),
running one unit anywhere (:mod:`.units`), the engines that run them (:mod:`.engines`), live
extraction from a stream (:mod:`.live`) and the progress bars (:mod:`.progress`)."""
