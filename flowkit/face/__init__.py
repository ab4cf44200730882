"""SPEC 1, the face: landmarks in the dlib 68-point scheme (:mod:`flowkit.face.landmarks`, a registry
of backends) and the reference frame, face box and 128x128 crop (:mod:`flowkit.face.crop`)."""
